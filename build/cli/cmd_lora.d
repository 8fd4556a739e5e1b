build/cli/cmd_lora.o: cli/cmd_lora.c cli/cli.h cli/../common/et.h
cli/cli.h:
cli/../common/et.h:
