// Command spdy-remotecommand is a Kubernetes remote-command client for Berth's e2e tests. It speaks
// on the wire what client-go's SPDY executor (remotecommand.NewSPDYExecutor, as kubelet and kubectl
// use it) speaks, on the same library, spdystream: an HTTP/1.1 upgrade to SPDY/3.1 offering
// v4.channel.k8s.io first, one stream per channel (error first), stdin half-closed with FIN while
// the connection stays open, output read to EOF, then the JSON status from the error stream.
//
// client-go itself is not packaged in Debian; spdystream is (golang-github-docker-spdystream-dev).
// Build in GOPATH mode:
//
//	GO111MODULE=off GOPATH=$dir:/usr/share/gocode go build -o spdy-remotecommand ./e2e/peers/spdy
//
// The result is printed on stdout as one JSON object (see result); the exit code is 0 when the
// session ended by itself, 2 on a timeout, 1 on any other failure (the JSON still says what was
// seen).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/docker/spdystream"
)

// The protocols client-go's SPDY executor offers, newest first.
var protocols = []string{
	"v4.channel.k8s.io",
	"v3.channel.k8s.io",
	"v2.channel.k8s.io",
	"channel.k8s.io",
}

// client-go waits this long for each stream's SYN_REPLY (httpstream/spdy createStreamResponseTimeout).
const streamReplyTimeout = 30 * time.Second

// client-go's SPDY round tripper pings every 5 s, so that proxies keep the connection.
const pingPeriod = 5 * time.Second

type result struct {
	Protocol string `json:"protocol"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	// Status is the raw content of the error stream (a metav1.Status in JSON for v4).
	Status string `json:"status"`
	// Milliseconds from stdin's FIN (or from the start of the session without stdin) to its end.
	EndedAfterMs int64 `json:"ended_after_ms"`
	// Why the session did not end cleanly; empty when it did.
	Error string `json:"error"`
	// Half-closing stdin failed (the session had already ended, as a rule).
	HalfCloseError string `json:"half_close_error"`
	// True when the session did not end within the timeout.
	TimedOut bool `json:"timed_out"`
}

// buffer collects one output stream; safe to read while a goroutine writes it.
type buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	// changed is signalled (without blocking) on every write.
	changed chan struct{}
}

func newBuffer() *buffer { return &buffer{changed: make(chan struct{}, 1)} }

func (b *buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	n, err := b.buf.Write(p)
	b.mu.Unlock()
	select {
	case b.changed <- struct{}{}:
	default:
	}
	return n, err
}

func (b *buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func main() {
	rawURL := flag.String("url", "", "the URL from the CRI Exec or Attach response")
	stdin := flag.Bool("stdin", false, "open a stdin stream")
	stdout := flag.Bool("stdout", true, "open a stdout stream")
	stderr := flag.Bool("stderr", true, "open a stderr stream")
	input := flag.String("input", "", "data written to stdin")
	repeat := flag.Int("repeat", 1, "how many times the input is written (for inputs larger than an argument may be)")
	closeAfter := flag.String("close-after", "", "half-close stdin only once stdout contains this (default: right after the input)")
	noClose := flag.Bool("no-close", false, "never half-close stdin: wait with it open")
	timeout := flag.Duration("timeout", 20*time.Second, "give up if the session has not ended by then")
	flag.Parse()

	res := result{}
	err := run(*rawURL, *stdin, *stdout, *stderr, strings.Repeat(*input, *repeat), *closeAfter, *noClose, *timeout, &res)
	code := 0
	if err != nil {
		res.Error = err.Error()
		code = 1
		if res.TimedOut {
			code = 2
		}
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
	os.Exit(code)
}

func run(rawURL string, wantStdin, wantStdout, wantStderr bool, input, closeAfter string,
	noClose bool, timeout time.Duration, res *result) error {
	deadline := time.Now().Add(timeout)
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("bad URL %q: %v", rawURL, err)
	}
	if u.Scheme != "http" {
		return fmt.Errorf("only http:// URLs are supported, not %q", rawURL)
	}
	conn, err := net.DialTimeout("tcp", u.Host, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()

	protocol, buffered, err := upgrade(conn, u)
	if err != nil {
		return err
	}
	res.Protocol = protocol

	spdy, err := spdystream.NewConnection(&bufferedConn{Conn: conn, reader: buffered}, false)
	if err != nil {
		return fmt.Errorf("SPDY connection: %v", err)
	}
	defer spdy.Close()
	// The server never opens streams in this protocol; client-go refuses them too.
	go spdy.Serve(func(s *spdystream.Stream) { _ = s.Refuse() })
	go func() {
		for {
			select {
			case <-spdy.CloseChan():
				return
			case <-time.After(pingPeriod):
				_, _ = spdy.Ping()
			}
		}
	}()

	// client-go (streamProtocolV2.createStreams) reuses one header map, changing streamType.
	create := func(kind string) (*spdystream.Stream, error) {
		headers := http.Header{}
		headers.Set("streamType", kind)
		s, err := spdy.CreateStream(headers, nil, false)
		if err != nil {
			return nil, fmt.Errorf("creating the %s stream: %v", kind, err)
		}
		if err := s.WaitTimeout(streamReplyTimeout); err != nil {
			return nil, fmt.Errorf("waiting for the reply to the %s stream: %v", kind, err)
		}
		return s, nil
	}
	errorStream, err := create("error")
	if err != nil {
		return err
	}
	var stdinStream, stdoutStream, stderrStream *spdystream.Stream
	if wantStdin {
		if stdinStream, err = create("stdin"); err != nil {
			return err
		}
	}
	if wantStdout {
		if stdoutStream, err = create("stdout"); err != nil {
			return err
		}
	}
	if wantStderr {
		if stderrStream, err = create("stderr"); err != nil {
			return err
		}
	}

	// The status: client-go reads the error stream to EOF in a goroutine of its own.
	statusDone := make(chan []byte, 1)
	go func() {
		data, _ := io.ReadAll(errorStream)
		statusDone <- data
	}()

	outBuf, errBuf := newBuffer(), newBuffer()
	// Whatever came, however the session ends.
	defer func() { res.Stdout, res.Stderr = outBuf.String(), errBuf.String() }()
	var outputs sync.WaitGroup
	copyOut := func(s *spdystream.Stream, to io.Writer) {
		if s == nil {
			return
		}
		outputs.Add(1)
		go func() {
			defer outputs.Done()
			_, _ = io.Copy(to, s)
		}()
	}
	copyOut(stdoutStream, outBuf)
	copyOut(stderrStream, errBuf)

	start := time.Now()
	if stdinStream != nil {
		// In 32 KiB writes, as client-go's io.Copy from the user's stdin does.
		for data := []byte(input); len(data) > 0; {
			n := len(data)
			if n > 32*1024 {
				n = 32 * 1024
			}
			if _, err := stdinStream.Write(data[:n]); err != nil {
				return fmt.Errorf("writing stdin: %v", err)
			}
			data = data[n:]
		}
		if closeAfter != "" {
			if err := waitFor(outBuf, closeAfter, deadline); err != nil {
				res.TimedOut = true
				return err
			}
		}
		if !noClose {
			// What client-go does when its stdin reader hits EOF: FIN on the stream, nothing
			// else; the connection stays open for the output and the status. Like client-go,
			// a failure here is no failure of the session (the server may have ended it and
			// closed the connection already): the outputs and the status say how it ended.
			if err := stdinStream.Close(); err != nil {
				res.HalfCloseError = err.Error()
			}
		}
		start = time.Now()
	}

	// client-go: wait for stdout and stderr to reach EOF, then for the status.
	ended := make(chan []byte, 1)
	go func() {
		outputs.Wait()
		ended <- <-statusDone
	}()
	remaining := time.Until(deadline)
	select {
	case status := <-ended:
		res.EndedAfterMs = time.Since(start).Milliseconds()
		res.Status = string(status)
		return nil
	case <-time.After(remaining):
		res.TimedOut = true
		return fmt.Errorf("the session did not end within %v", timeout)
	}
}

// waitFor waits until b contains marker.
func waitFor(b *buffer, marker string, deadline time.Time) error {
	for !strings.Contains(b.String(), marker) {
		select {
		case <-b.changed:
		case <-time.After(time.Until(deadline)):
			return fmt.Errorf("stdout never showed %q", marker)
		}
	}
	return nil
}

// bufferedConn reads through the reader the upgrade response was read with, so that frames the
// server sent right behind the response are not lost.
type bufferedConn struct {
	net.Conn
	reader *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.reader.Read(p) }

// upgrade sends the HTTP/1.1 upgrade request the SPDY round tripper sends and checks the answer;
// it returns the negotiated protocol and the reader holding whatever followed the answer.
func upgrade(conn net.Conn, u *url.URL) (string, *bufio.Reader, error) {
	req, err := http.NewRequest(http.MethodPost, u.String(), nil)
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "SPDY/3.1")
	for _, p := range protocols {
		req.Header.Add("X-Stream-Protocol-Version", p)
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if err := req.Write(conn); err != nil {
		return "", nil, fmt.Errorf("sending the upgrade request: %v", err)
	}
	reader := bufio.NewReader(conn)
	resp, err := http.ReadResponse(reader, req)
	if err != nil {
		return "", nil, fmt.Errorf("reading the upgrade response: %v", err)
	}
	_ = conn.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusSwitchingProtocols {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return "", nil, fmt.Errorf("upgrade refused: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "SPDY/3.1") {
		return "", nil, fmt.Errorf("upgraded to %q, not SPDY/3.1", resp.Header.Get("Upgrade"))
	}
	protocol := resp.Header.Get("X-Stream-Protocol-Version")
	if protocol != protocols[0] {
		return "", nil, fmt.Errorf("server chose protocol %q, not %s", protocol, protocols[0])
	}
	return protocol, reader, nil
}
