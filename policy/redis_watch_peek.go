//go:build linux || darwin

package policy

import "syscall"

// peekClosed says whether the socket fd was closed by its peer (or
// failed): a non-blocking peek reads end of file. Nothing is consumed.
func peekClosed(fd uintptr, buf []byte) bool {
	n, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if err != nil {
		return err != syscall.EAGAIN && err != syscall.EWOULDBLOCK && err != syscall.EINTR
	}
	return n == 0
}
