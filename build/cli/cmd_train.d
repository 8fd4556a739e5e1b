build/cli/cmd_train.o: cli/cmd_train.c cli/cli.h cli/../common/et.h
cli/cli.h:
cli/../common/et.h:
