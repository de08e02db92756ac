// Package sandbox confines the router process with Landlock so it can
// bind TCP only on the ports of its configured loopback listeners.
//
// Anything a library opens behind the router's back (tailscale's peerAPI
// kernel listener on 0.0.0.0 is the known case) then fails to bind, and
// tailscale falls back to its netstack-only listener. Landlock restricts
// every thread of the process and everything it executes, for the rest of
// its life; it cannot be lifted.
//
// What Landlock does not cover: UDP (before ABI 10; the tailnet's WireGuard
// socket needs UDP anyway), Multipath TCP sockets (the router's main package
// turns Go's MPTCP default off so its listeners are plain TCP), and
// listeners opened before RestrictBind is called.
package sandbox

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// Mode says what to do when the kernel cannot enforce the bind rules.
type Mode string

const (
	// Auto enforces the rules where the kernel supports them and otherwise
	// carries on, unconfined, after one log line.
	Auto Mode = "auto"
	// Require refuses to start when the rules cannot be enforced.
	Require Mode = "require"
	// Off does not confine the process.
	Off Mode = "off"
)

// ParseMode reads a --sandbox value.
func ParseMode(s string) (Mode, error) {
	switch m := Mode(strings.ToLower(strings.TrimSpace(s))); m {
	case Auto, Require, Off:
		return m, nil
	case "":
		return Auto, nil
	}
	return "", fmt.Errorf("sandbox mode %q: want auto, require or off", s)
}

// ErrUnsupported is returned (wrapped) when the running kernel has no
// Landlock TCP rules (Linux < 6.7, Landlock disabled at boot, or not Linux).
var ErrUnsupported = errors.New("kernel cannot restrict TCP bind (Landlock ABI 4, Linux 6.7, is needed)")

// Result says what RestrictBind enforced.
type Result struct {
	// Enforced is true when binds to other ports now fail.
	Enforced bool
	// ABI is the kernel's Landlock ABI version (0 when absent).
	ABI int
	// Ports are the TCP ports binding stays allowed on.
	Ports []uint16
}

// PortOf returns the TCP port of a host:port listen address, resolving
// service names as net.Listen would.
func PortOf(addr string) (uint16, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("listen address %q: %w", addr, err)
	}
	if n, err := strconv.ParseUint(p, 10, 16); err == nil {
		return uint16(n), nil
	}
	n, err := net.LookupPort("tcp", p)
	if err != nil {
		return 0, fmt.Errorf("listen address %q: bad port", addr)
	}
	return uint16(n), nil
}

// RestrictBind confines the whole process so TCP bind succeeds only on
// ports. With no ports, no TCP bind succeeds. Connecting is not
// restricted. In Auto mode an unsupported kernel is not an error: the
// Result says nothing was enforced. In Require mode it is. Off does
// nothing.
func RestrictBind(mode Mode, ports []uint16) (Result, error) {
	if mode == Off {
		return Result{}, nil
	}
	res, err := restrictBind(ports)
	if errors.Is(err, ErrUnsupported) && mode == Auto {
		return res, nil
	}
	return res, err
}
