build/cli/cmd_data.o: cli/cmd_data.c cli/cli.h cli/../common/et.h
cli/cli.h:
cli/../common/et.h:
