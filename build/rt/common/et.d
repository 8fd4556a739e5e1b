build/rt/common/et.o: common/et.c common/et.h
common/et.h:
