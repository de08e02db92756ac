//go:build !unix

package backends

import "net"

// peerStillOpen cannot peek without blocking here; the retry on a stale
// connection covers it.
func peerStillOpen(net.Conn) bool { return true }

func isConnReset(error) bool { return false }
