package main

import (
	"bufio"
	byteorder "encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// tcpListeners returns the local addresses of the TCP sockets in LISTEN
// state that process pid holds, read from /proc (the kernel's view, the
// same ss -ltnp prints): the socket inodes among its open files, matched
// against /proc/PID/net/tcp and tcp6.
func tcpListeners(t *testing.T, pid int) []netip.AddrPort {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("reading the process's open files: %v", err)
	}
	inodes := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err != nil {
			continue // closed meanwhile
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []netip.AddrPort
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || fields[3] != "0A" || !inodes[fields[9]] {
				continue
			}
			ap, err := parseProcAddr(fields[1])
			if err != nil {
				t.Fatalf("%s: %v", table, err)
			}
			out = append(out, ap)
		}
		f.Close()
	}
	return out
}

// parseProcAddr reads /proc/net/tcp's "HEXADDR:HEXPORT": the address is
// the kernel's in-memory bytes printed as 32-bit words in host order.
func parseProcAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if !ok || err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		byteorder.BigEndian.PutUint32(raw[i:], byteorder.LittleEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}

// offLoopback returns the listeners not bound to a loopback address.
func offLoopback(ls []netip.AddrPort) []netip.AddrPort {
	var out []netip.AddrPort
	for _, l := range ls {
		if !l.Addr().IsLoopback() {
			out = append(out, l)
		}
	}
	return out
}

func TestParseProcAddr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"0100007F:1F90", "127.0.0.1:8080"},
		{"00000000:8C5A", "0.0.0.0:35930"},
		{"00000000000000000000000001000000:0050", "[::1]:80"},
		{"00000000000000000000000000000000:8C5A", "[::]:35930"},
		{"0000000000000000FFFF00000100007F:1F90", "127.0.0.1:8080"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseProcAddr(tc.in)
			if err != nil || got.String() != tc.want {
				t.Errorf("parseProcAddr(%q) = %v, %v; want %s", tc.in, got, err, tc.want)
			}
		})
	}
}

// isLoopbackAddrPort reads ss's "Local Address:Port" column.
func isLoopbackAddrPort(s string) bool {
	ap, err := netip.ParseAddrPort(strings.Replace(s, "%lo", "", 1))
	return err == nil && ap.Addr().Unmap().IsLoopback()
}
