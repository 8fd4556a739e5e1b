build/cli/main.o: cli/main.c cli/cli.h cli/../common/et.h
cli/cli.h:
cli/../common/et.h:
