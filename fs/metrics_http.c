/* metrics_http.c - the metrics' HTTP endpoint: the listening socket, and
 * libmicrohttpd serving GET /metrics on it (a library the field trusts
 * with hostile clients: timeouts, connection limits, request parsing). */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <microhttpd.h>

#include "fs/metrics.h"
#include "fs/metrics_http.h"

#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

static struct MHD_Daemon *daemon_;

int fs_metrics_listen(const char *addr, char *err, size_t errlen)
{
	char host[256];
	const char *colon = strrchr(addr, ':'), *h = addr;
	size_t hn = colon ? (size_t)(colon - addr) : 0;
	if (hn >= 2 && addr[0] == '[' && addr[hn - 1] == ']') {
		h = addr + 1; /* [::1]:9567 */
		hn -= 2;
	}
	if (!colon || !colon[1] || hn == 0 || hn >= sizeof(host)) {
		snprintf(err, errlen,
			 "metrics listen '%s' is not HOST:PORT (for example "
			 "127.0.0.1:9567)",
			 addr);
		return -EINVAL;
	}
	memcpy(host, h, hn);
	host[hn] = '\0';
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE | AI_NUMERICSERV},
			*res;
	int gai = getaddrinfo(host, colon + 1, &hints, &res);
	if (gai) {
		snprintf(err, errlen, "metrics listen '%s': %s", addr,
			 gai_strerror(gai));
		return -EINVAL;
	}
	int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, 0);
	int one = 1, e = 0;
	if (fd < 0 ||
	    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) ||
	    bind(fd, res->ai_addr, res->ai_addrlen) || listen(fd, 16))
		e = errno;
	freeaddrinfo(res);
	if (e) {
		if (fd >= 0)
			close(fd);
		snprintf(err, errlen, "cannot listen on %s for metrics: %s",
			 addr, strerror(e));
		return -e;
	}
	return fd;
}

/* Answer with body (malloc'd, taken). */
static enum MHD_Result reply(struct MHD_Connection *conn, unsigned code,
			     char *body, const char *type)
{
	struct MHD_Response *r =
	    body ? MHD_create_response_from_buffer(strlen(body), body,
						   MHD_RESPMEM_MUST_FREE)
		 : NULL;
	if (!r) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
		MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
	enum MHD_Result ret = MHD_queue_response(conn, code, r);
	MHD_destroy_response(r);
	return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn,
				  const char *url, const char *method,
				  const char *version, const char *upload,
				  size_t *upload_size, void **state)
{
	(void)version;
	(void)upload;
	(void)upload_size;
	(void)state;
	if (strcmp(method, "GET") && strcmp(method, "HEAD"))
		return reply(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
			     strdup("only GET /metrics\n"), "text/plain");
	if (strcmp(url, "/metrics"))
		return reply(conn, MHD_HTTP_NOT_FOUND,
			     strdup("thumbfs serves its metrics at /metrics\n"),
			     "text/plain");
	return reply(conn, MHD_HTTP_OK, fs_metrics_render(cls), CONTENT_TYPE);
}

int fs_metrics_serve(struct thumbfs *fs, int fd, char *err, size_t errlen)
{
	/* one thread; a slow client is dropped after 10 s, and 16 at once
	 * are all it takes */
	daemon_ = MHD_start_daemon(
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL, 0, NULL, NULL,
	    on_request, fs, MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_CONNECTION_LIMIT, 16U, MHD_OPTION_CONNECTION_TIMEOUT,
	    10U, MHD_OPTION_END);
	if (!daemon_) {
		snprintf(err, errlen,
			 "cannot serve the metrics (libmicrohttpd "
			 "did not start)");
		close(fd);
		return -1;
	}
	return 0;
}

void fs_metrics_stop(void)
{
	if (daemon_)
		MHD_stop_daemon(daemon_); /* closes the socket it was given */
	daemon_ = NULL;
}
