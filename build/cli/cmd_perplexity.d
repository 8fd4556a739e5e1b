build/cli/cmd_perplexity.o: cli/cmd_perplexity.c cli/cli.h \
 cli/../common/et.h
cli/cli.h:
cli/../common/et.h:
