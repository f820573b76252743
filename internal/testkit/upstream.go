package testkit

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"strconv"
	"strings"
	"testing"
)

// RawUpstream serves one canned HTTP response to every request on
// keep-alive connections, allocating nothing per request, so allocation
// counts measure the client alone. It returns the base URL.
func RawUpstream(tb testing.TB, response []byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func(c net.Conn) {
				defer c.Close()
				br := bufio.NewReaderSize(c, 64<<10)
				for {
					length := 0
					for {
						line, err := br.ReadSlice('\n')
						if err != nil {
							return
						}
						if len(line) <= 2 {
							break
						}
						const cl = "content-length:"
						if len(line) > len(cl) && bytes.EqualFold(line[:len(cl)], []byte(cl)) {
							for _, d := range bytes.TrimSpace(line[len(cl):]) {
								length = length*10 + int(d-'0')
							}
						}
					}
					if _, err := br.Discard(length); err != nil {
						return
					}
					if _, err := c.Write(response); err != nil {
						return
					}
				}
			}(c)
		}
	}()
	return "http://" + ln.Addr().String()
}

// ChunkedSSE renders events as a chunked text/event-stream response.
func ChunkedSSE(events ...string) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
	for _, e := range events {
		b.WriteString(strconv.FormatInt(int64(len(e)), 16) + "\r\n" + e + "\r\n")
	}
	b.WriteString("0\r\n\r\n")
	return b.Bytes()
}

// JSONResponse is a whole HTTP/1.1 200 response carrying body as JSON.
func JSONResponse(body string) []byte {
	return []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

// Drain reads a stream to its end, returning the text and final error.
func Drain(s interface{ Next() ([]byte, error) }) (string, error) {
	var sb strings.Builder
	for {
		d, err := s.Next()
		if err != nil {
			return sb.String(), err
		}
		if len(d) == 0 {
			return sb.String(), errors.New("empty delta with nil error")
		}
		sb.Write(d)
	}
}
