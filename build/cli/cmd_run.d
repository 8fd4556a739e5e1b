build/cli/cmd_run.o: cli/cmd_run.c cli/cli.h cli/../common/et.h
cli/cli.h:
cli/../common/et.h:
