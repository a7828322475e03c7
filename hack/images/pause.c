/*
 * Minimal pause binary for Berth's test images (berth-test/pause:3.9), the
 * sandbox image containerd uses in side-by-side benchmarks. Like Kubernetes'
 * pause: sleeps in pause() forever, exits 0 on SIGINT/SIGTERM, and reaps any
 * zombie reparented to it (it usually runs as PID 1 of the pod). Must stay
 * reproducible: no __DATE__/__TIME__, no build paths.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
	(void)sig;
	_exit(0);
}

static void on_child(int sig)
{
	(void)sig;
	/* Reap everything that has exited; WNOHANG so we never block here. */
	while (waitpid(-1, NULL, WNOHANG) > 0)
		;
}

int main(int argc, char **argv)
{
	struct sigaction sa;

	if (argc > 1 && strcmp(argv[1], "-v") == 0) {
		printf("pause.c berth-test 3.9\n");
		return 0;
	}
	if (getpid() != 1)
		fprintf(stderr, "Warning: pause should be the first process\n");

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_stop;
	if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
		return 1;
	sa.sa_handler = on_child;
	sa.sa_flags = SA_NOCLDSTOP | SA_RESTART;
	if (sigaction(SIGCHLD, &sa, NULL) < 0)
		return 2;

	for (;;)
		pause();
	return 42; /* not reached */
}
