build/cli/cmd_tokenize.o: cli/cmd_tokenize.c cli/cli.h cli/../common/et.h
cli/cli.h:
cli/../common/et.h:
