/*
 * Tiny static HTTP/1.1 server for Berth's test images (berth-test/httpd).
 *
 *   httpd [PORT]          port from argv[1], else $PORT, else 8080
 *
 * Listens on 0.0.0.0 and forks one child per connection, so any number of
 * concurrent (keep-alive) connections work without an event loop. Routes:
 *
 *   GET /            "hello from berth httpd\n"
 *   GET /hostname    the hostname (uname nodename) plus "\n"
 *   GET /bytes/N     N bytes of filler (for throughput tests)
 *   GET /healthz     "ok\n" (handy for probes)
 *
 * HEAD works on all routes. SIGTERM/SIGINT make the server exit 0. Must stay
 * reproducible: no __DATE__/__TIME__, no build paths.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define REQ_MAX 8192
#define CHUNK 65536
#define IDLE_TIMEOUT_SEC 60

static volatile sig_atomic_t stop_requested;

static void on_stop(int sig)
{
	(void)sig;
	stop_requested = 1;
}

/* Write all of buf; returns 0 on success, -1 if the peer went away. */
static int write_all(int fd, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, buf, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		buf += n;
		len -= (size_t)n;
	}
	return 0;
}

static int send_head(int fd, int status, const char *reason,
		     unsigned long long len, int keep_alive)
{
	char hdr[512];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %d %s\r\n"
			 "Server: berth-httpd\r\n"
			 "Content-Type: text/plain\r\n"
			 "Content-Length: %llu\r\n"
			 "Connection: %s\r\n"
			 "\r\n",
			 status, reason, len, keep_alive ? "keep-alive" : "close");
	return write_all(fd, hdr, (size_t)n);
}

static int send_text(int fd, int status, const char *reason, const char *body,
		     int head_only, int keep_alive)
{
	size_t len = strlen(body);
	if (send_head(fd, status, reason, len, keep_alive) < 0)
		return -1;
	return head_only ? 0 : write_all(fd, body, len);
}

static int send_bytes(int fd, unsigned long long n, int head_only,
		      int keep_alive)
{
	static char filler[CHUNK];
	if (filler[0] == 0) {
		for (size_t i = 0; i < sizeof(filler); i++)
			filler[i] = (char)('a' + i % 26);
	}
	if (send_head(fd, 200, "OK", n, keep_alive) < 0)
		return -1;
	if (head_only)
		return 0;
	while (n > 0) {
		size_t chunk = n > CHUNK ? CHUNK : (size_t)n;
		if (write_all(fd, filler, chunk) < 0)
			return -1;
		n -= chunk;
	}
	return 0;
}

/* Case-insensitive search for a header line "name: value" containing token. */
static int header_has(const char *headers, const char *name, const char *token)
{
	size_t nlen = strlen(name);
	const char *p = headers;
	while ((p = strstr(p, "\r\n")) != NULL) {
		p += 2;
		if (strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
			const char *eol = strstr(p, "\r\n");
			size_t l = eol ? (size_t)(eol - p) : strlen(p);
			char line[256];
			if (l >= sizeof(line))
				l = sizeof(line) - 1;
			memcpy(line, p, l);
			line[l] = 0;
			if (strcasestr(line + nlen + 1, token))
				return 1;
		}
	}
	return 0;
}

/* Handle one request; returns 1 to keep the connection open, 0 to close. */
static int handle(int fd, char *req)
{
	char method[16], path[1024], version[16];
	char hostname[256];
	int head_only, keep_alive;

	if (sscanf(req, "%15s %1023s %15s", method, path, version) != 3) {
		send_text(fd, 400, "Bad Request", "bad request\n", 0, 0);
		return 0;
	}
	if (strcmp(version, "HTTP/1.1") == 0)
		keep_alive = !header_has(req, "Connection", "close");
	else
		keep_alive = header_has(req, "Connection", "keep-alive");

	head_only = strcmp(method, "HEAD") == 0;
	if (!head_only && strcmp(method, "GET") != 0)
		return send_text(fd, 405, "Method Not Allowed",
				 "method not allowed\n", 0, keep_alive) == 0 &&
		       keep_alive;

	int rc;
	if (strcmp(path, "/") == 0) {
		rc = send_text(fd, 200, "OK", "hello from berth httpd\n",
			       head_only, keep_alive);
	} else if (strcmp(path, "/hostname") == 0) {
		if (gethostname(hostname, sizeof(hostname) - 2) < 0)
			strcpy(hostname, "unknown");
		hostname[sizeof(hostname) - 2] = 0;
		strcat(hostname, "\n");
		rc = send_text(fd, 200, "OK", hostname, head_only, keep_alive);
	} else if (strcmp(path, "/healthz") == 0) {
		rc = send_text(fd, 200, "OK", "ok\n", head_only, keep_alive);
	} else if (strncmp(path, "/bytes/", 7) == 0) {
		char *end;
		errno = 0;
		unsigned long long n = strtoull(path + 7, &end, 10);
		if (errno || end == path + 7 || *end != 0)
			rc = send_text(fd, 400, "Bad Request", "bad byte count\n",
				       head_only, keep_alive);
		else
			rc = send_bytes(fd, n, head_only, keep_alive);
	} else {
		rc = send_text(fd, 404, "Not Found", "not found\n", head_only,
			       keep_alive);
	}
	return rc == 0 && keep_alive;
}

/* Child: serve requests on one connection until close/timeout/error. */
static void serve_conn(int fd)
{
	char buf[REQ_MAX + 1];
	size_t used = 0;
	struct timeval tv = { .tv_sec = IDLE_TIMEOUT_SEC };

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (;;) {
		char *end;
		buf[used] = 0;
		while ((end = strstr(buf, "\r\n\r\n")) == NULL) {
			if (used == REQ_MAX) {
				send_text(fd, 431, "Request Header Fields Too Large",
					  "headers too large\n", 0, 0);
				return;
			}
			ssize_t n = read(fd, buf + used, REQ_MAX - used);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				return;
			used += (size_t)n;
			buf[used] = 0;
		}
		/* Request bodies are not supported (GET/HEAD only); pipelined
		 * requests after the header block are kept for the next round. */
		size_t reqlen = (size_t)(end - buf) + 4;
		end[2] = 0; /* keep the last header's CRLF for header_has */
		if (!handle(fd, buf))
			return;
		memmove(buf, buf + reqlen, used - reqlen);
		used -= reqlen;
	}
}

int main(int argc, char **argv)
{
	const char *port_s = argc > 1 ? argv[1] : getenv("PORT");
	int port = port_s && *port_s ? atoi(port_s) : 8080;
	int one = 1;
	struct sockaddr_in addr;
	struct sigaction sa;

	if (port <= 0 || port > 65535) {
		fprintf(stderr, "httpd: invalid port '%s'\n", port_s);
		return 2;
	}

	/* No SA_RESTART: SIGTERM must interrupt accept() so main can exit. */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_stop;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	/* Children are reaped automatically; peers closing early must not kill
	 * us with SIGPIPE. */
	signal(SIGCHLD, SIG_IGN);
	signal(SIGPIPE, SIG_IGN);

	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (lfd < 0) {
		perror("httpd: socket");
		return 1;
	}
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	memset(&addr, 0, sizeof(addr));
	addr.sin_family = AF_INET;
	addr.sin_addr.s_addr = htonl(INADDR_ANY);
	addr.sin_port = htons((unsigned short)port);
	if (bind(lfd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
		perror("httpd: bind");
		return 1;
	}
	if (listen(lfd, 1024) < 0) {
		perror("httpd: listen");
		return 1;
	}
	printf("httpd: listening on 0.0.0.0:%d\n", port);
	fflush(stdout);

	while (!stop_requested) {
		int cfd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		if (cfd < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE) {
				usleep(10000); /* back off instead of spinning */
				continue;
			}
			perror("httpd: accept");
			return 1;
		}
		setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		pid_t pid = fork();
		if (pid == 0) {
			close(lfd);
			/* The child serves; SIGTERM now just ends the process. */
			signal(SIGTERM, SIG_DFL);
			signal(SIGINT, SIG_DFL);
			serve_conn(cfd);
			_exit(0);
		}
		if (pid < 0)
			perror("httpd: fork");
		close(cfd);
	}
	close(lfd);
	printf("httpd: received stop signal, exiting\n");
	fflush(stdout);
	return 0;
}
