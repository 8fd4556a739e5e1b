build/cli/cmd_quantize.o: cli/cmd_quantize.c cli/cli.h cli/../common/et.h
cli/cli.h:
cli/../common/et.h:
