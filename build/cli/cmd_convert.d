build/cli/cmd_convert.o: cli/cmd_convert.c cli/cli.h cli/../common/et.h
cli/cli.h:
cli/../common/et.h:
