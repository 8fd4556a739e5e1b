build/cli/args.o: cli/args.c /usr/include/cjson/cJSON.h cli/cli.h \
 cli/../common/et.h
/usr/include/cjson/cJSON.h:
cli/cli.h:
cli/../common/et.h:
