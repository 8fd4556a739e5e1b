build/cli/cmd_merge.o: cli/cmd_merge.c cli/cli.h cli/../common/et.h
cli/cli.h:
cli/../common/et.h:
