/* Modbus slave for the mapper tests, on libmodbus (Debian libmodbus-dev).
 * Based on the verified recipe in shared/recipes/device-peers, extended to
 * serve several TCP clients at once (select loop) so that a mapper and an
 * independent checking client can talk to it together.
 *   TCP: modbus_slave tcp 127.0.0.1 PORT
 *   RTU: modbus_slave rtu /dev/PTY BAUD [UNIT]
 * Holding regs 0..99 = 1000+i, input regs 0..99 = 2000+i, coils 0..99 = i%2,
 * discrete inputs 0..99 = (i+1)%2, except input register 99, which counts
 * seconds (TCP mode), for tests and benchmarks that need a changing value.
 * Writes are kept. Prints READY when serving. */
#include <modbus.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc < 4) { fprintf(stderr, "usage: %s tcp IP PORT | rtu DEV BAUD [UNIT]\n", argv[0]); return 2; }
  int rtu = strcmp(argv[1], "rtu") == 0;
  modbus_t *ctx = rtu ? modbus_new_rtu(argv[2], atoi(argv[3]), 'N', 8, 1) : modbus_new_tcp(argv[2], atoi(argv[3]));
  if (!ctx) { perror("modbus_new"); return 1; }
  modbus_mapping_t *mb = modbus_mapping_new(100, 100, 100, 100);
  for (int i = 0; i < 100; i++) {
    mb->tab_registers[i] = 1000 + i; mb->tab_input_registers[i] = 2000 + i;
    mb->tab_bits[i] = i % 2; mb->tab_input_bits[i] = (i + 1) % 2;
  }
  uint8_t q[MODBUS_TCP_MAX_ADU_LENGTH];
  setvbuf(stdout, NULL, _IONBF, 0);
  if (rtu) {
    int unit = argc > 4 ? atoi(argv[4]) : 1;
    modbus_set_slave(ctx, unit);
    if (modbus_connect(ctx) == -1) { fprintf(stderr, "connect: %s\n", modbus_strerror(errno)); return 1; }
    printf("READY rtu %s\n", argv[2]);
    for (;;) {
      int rc = modbus_receive(ctx, q);
      if (rc > 0) { modbus_reply(ctx, q, rc, mb); continue; }
      if (rc == 0) {
        /* A request for another unit: libmodbus now expects that unit's
         * answer and would swallow the next request as it. No other unit
         * answers on this virtual line, so start afresh instead. */
        modbus_close(ctx); modbus_free(ctx);
        ctx = modbus_new_rtu(argv[2], atoi(argv[3]), 'N', 8, 1);
        if (!ctx) { perror("modbus_new_rtu"); return 1; }
        modbus_set_slave(ctx, unit);
        if (modbus_connect(ctx) == -1) { fprintf(stderr, "reconnect: %s\n", modbus_strerror(errno)); return 1; }
      }
    }
  }
  int server = modbus_tcp_listen(ctx, 16);
  if (server < 0) { fprintf(stderr, "listen: %s\n", modbus_strerror(errno)); return 1; }
  fd_set all; FD_ZERO(&all); FD_SET(server, &all);
  int maxfd = server;
  printf("READY tcp %s:%s\n", argv[2], argv[3]);
  time_t started = time(NULL);
  for (;;) {
    fd_set rd = all;
    struct timeval tick = {0, 200000};
    if (select(maxfd + 1, &rd, NULL, NULL, &tick) == -1) { if (errno == EINTR) continue; perror("select"); return 1; }
    mb->tab_input_registers[99] = (uint16_t)(time(NULL) - started);
    for (int fd = 0; fd <= maxfd; fd++) {
      if (!FD_ISSET(fd, &rd)) continue;
      if (fd == server) {
        int c = accept(server, NULL, NULL);
        if (c >= 0) { FD_SET(c, &all); if (c > maxfd) maxfd = c; }
        continue;
      }
      modbus_set_socket(ctx, fd);
      int rc = modbus_receive(ctx, q);
      if (rc > 0) modbus_reply(ctx, q, rc, mb);
      else if (rc == -1) { close(fd); FD_CLR(fd, &all); }
    }
  }
}
