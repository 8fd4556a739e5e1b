build/cli/cmd_inspect.o: cli/cmd_inspect.c cli/cli.h cli/../common/et.h
cli/cli.h:
cli/../common/et.h:
