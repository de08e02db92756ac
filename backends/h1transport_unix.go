//go:build unix

package backends

import (
	"errors"
	"net"
	"syscall"
)

// peerStillOpen peeks at an idle connection without blocking: a serve that
// closed it (uvicorn closes keep-alive connections after 5 s idle) has left
// an end-of-stream to read, and stray bytes mean the connection is out of
// step. Either way it must not carry another request. One non-blocking
// recv is far cheaper than a failed request and a retry.
func peerStillOpen(nc net.Conn) bool {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := true
	var buf [1]byte
	err = raw.Read(func(fd uintptr) bool {
		_, _, rerr := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		// Only "would block" means healthy and idle; an error, an EOF
		// (n == 0) or unexpected bytes all rule the connection out.
		open = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true // never wait for readiness
	})
	return err == nil && open
}

func isConnReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
