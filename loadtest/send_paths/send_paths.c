// send_paths: the least a server can spend sending an HLS segment, by each of the kernel's
// send paths. Serves one 643,336-byte body (the size `cargo bench --bench hls` serves) to
// any HTTP/1.1 keep-alive GET, from one thread with epoll and nothing else, by one of:
//   0  copy:      send() from anonymous memory (what corecast does)
//   1  vmsplice:  vmsplice() of that memory into a pipe, splice() into the socket
//   2  memfd:     sendfile() from a sealed memfd
//   3  file:      sendfile() from a file in the page cache (what nginx does)
// Usage: send_paths MODE PORT [FILE]. See run.sh and docs/BENCHMARKS.md. Exploration
// only: no bounds on connections, no error answers.
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <errno.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

enum { COPY, VMSPLICE, MEMFD, FILEM };
static int mode; static char *body; static size_t blen; static int bodyfd;
static char hdr[256]; static int hlen;
#define PIPESZ (256*1024)
struct conn { int fd, p[2]; size_t off; int hoff; size_t inpipe; int sending; char rb[4096]; int rl; };

static int pump(struct conn *c) {
  while (c->sending) {
    if (c->hoff < hlen) {
      ssize_t n = send(c->fd, hdr + c->hoff, hlen - c->hoff, MSG_MORE);
      if (n < 0) return errno == EAGAIN ? 0 : -1;
      c->hoff += n; continue;
    }
    if (c->off >= blen && c->inpipe == 0) { c->sending = 0; break; }
    ssize_t n;
    if (mode == COPY) {
      n = send(c->fd, body + c->off, blen - c->off, 0);
      if (n < 0) return errno == EAGAIN ? 0 : -1;
      c->off += n;
    } else if (mode == VMSPLICE) {
      if (c->inpipe == 0) {
        size_t want = blen - c->off; if (want > PIPESZ) want = PIPESZ;
        struct iovec iov = { body + c->off, want };
        ssize_t v = vmsplice(c->p[1], &iov, 1, SPLICE_F_NONBLOCK);
        if (v < 0) return -1;
        c->off += v; c->inpipe = v;
      }
      n = splice(c->p[0], NULL, c->fd, NULL, c->inpipe, SPLICE_F_NONBLOCK | SPLICE_F_MORE);
      if (n < 0) return errno == EAGAIN ? 0 : -1;
      c->inpipe -= n;
    } else {
      off_t o = c->off;
      n = sendfile(c->fd, bodyfd, &o, blen - c->off);
      if (n < 0) return errno == EAGAIN ? 0 : -1;
      c->off = o;
    }
  }
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 3 || (atoi(argv[1]) == FILEM && argc < 4)) {
    fprintf(stderr, "usage: send_paths MODE(0 copy, 1 vmsplice, 2 memfd, 3 file) PORT [FILE]\n");
    return 2;
  }
  mode = atoi(argv[1]); int port = atoi(argv[2]);
  blen = 643336;
  if (mode == FILEM) {
    bodyfd = open(argv[3], O_RDONLY);
    if (bodyfd < 0) { perror(argv[3]); return 1; }
  } else if (mode == MEMFD) {
    bodyfd = memfd_create("seg", MFD_ALLOW_SEALING);
    char *tmp = malloc(blen); for (size_t i = 0; i < blen; i++) tmp[i] = i * 7;
    if (write(bodyfd, tmp, blen) != (ssize_t)blen) { perror("memfd"); return 1; }
    fcntl(bodyfd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW);
  } else {
    body = mmap(NULL, blen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < blen; i++) body[i] = i * 7;
  }
  hlen = snprintf(hdr, sizeof hdr, "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nContent-Length: %zu\r\n\r\n", blen);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0); int one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001) };
  if (bind(ls, (void *)&a, sizeof a) || listen(ls, 1024)) { perror("listen"); return 1; }
  int ep = epoll_create1(0);
  struct epoll_event ev = { .events = EPOLLIN, .data.ptr = NULL };
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  struct epoll_event evs[256];
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      struct conn *c = evs[i].data.ptr;
      if (!c) {
        int fd;
        while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          c = calloc(1, sizeof *c); c->fd = fd;
          if (mode == VMSPLICE) { pipe2(c->p, O_NONBLOCK); fcntl(c->p[1], F_SETPIPE_SZ, PIPESZ); }
          struct epoll_event e = { .events = EPOLLIN | EPOLLOUT | EPOLLET, .data.ptr = c };
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e);
        }
        continue;
      }
      int dead = 0;
      if (evs[i].events & EPOLLIN) {
        for (;;) {
          ssize_t r = read(c->fd, c->rb + c->rl, sizeof c->rb - c->rl);
          if (r == 0) { dead = 1; break; }
          if (r < 0) { if (errno != EAGAIN) dead = 1; break; }
          c->rl += r;
        }
      }
      while (!dead) {
        if (c->sending) { int r = pump(c); if (r < 0) dead = 1; if (r <= 0) break; }
        char *e = memmem(c->rb, c->rl, "\r\n\r\n", 4);
        if (!e) break;
        int used = e + 4 - c->rb; memmove(c->rb, c->rb + used, c->rl - used); c->rl -= used;
        c->sending = 1; c->off = 0; c->hoff = 0; c->inpipe = 0;
      }
      if (dead) { close(c->fd); if (mode == VMSPLICE) { close(c->p[0]); close(c->p[1]); } free(c); }
    }
  }
}
