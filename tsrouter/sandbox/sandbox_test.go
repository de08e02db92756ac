package sandbox_test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/anvil-serving/anvil-router/tsrouter/sandbox"
)

// The bind rules are tried in a child process: Landlock cannot be lifted,
// so confining the test process would confine every later test.
const childEnv = "SANDBOX_TEST_CHILD_PORT"

func TestMain(m *testing.M) {
	if p := os.Getenv(childEnv); p != "" {
		os.Exit(child(p))
	}
	os.Exit(m.Run())
}

// child confines itself to one port, then reports what binding does.
func child(port string) int {
	n, _ := strconv.Atoi(port)
	res, err := sandbox.RestrictBind(sandbox.Require, []uint16{uint16(n)})
	if err != nil || !res.Enforced {
		os.Stdout.WriteString("restrict failed: " + errString(err) + "\n")
		return 1
	}
	try := func(name, addr string) {
		// Plain TCP: Landlock's rules do not cover Multipath TCP.
		lc := net.ListenConfig{}
		lc.SetMultipathTCP(false)
		ln, err := lc.Listen(context.Background(), "tcp", addr)
		if err == nil {
			ln.Close()
			os.Stdout.WriteString(name + " ok\n")
			return
		}
		os.Stdout.WriteString(name + " denied\n")
	}
	try("allowed", "127.0.0.1:"+port)
	try("other", "127.0.0.1:0")
	try("wildcard", "0.0.0.0:0")
	// Connecting stays allowed.
	if c, err := net.Dial("tcp", os.Getenv("SANDBOX_TEST_DIAL")); err == nil {
		c.Close()
		os.Stdout.WriteString("dial ok\n")
	} else {
		os.Stdout.WriteString("dial denied\n")
	}
	return 0
}

func errString(err error) string {
	if err == nil {
		return "not enforced"
	}
	return err.Error()
}

func TestRestrictBindAllowsOnlyTheGivenPorts(t *testing.T) {
	if !sandbox.Supported() {
		t.Skip("kernel has no Landlock TCP rules")
	}
	free, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(free.Addr().(*net.TCPAddr).Port)
	free.Close()
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+port, "SANDBOX_TEST_DIAL="+target.Addr().String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	want := "allowed ok\nother denied\nwildcard denied\ndial ok\n"
	if string(out) != want {
		t.Errorf("child reported\n%s\nwant\n%s", out, want)
	}
}

func TestRestrictBindOffDoesNothing(t *testing.T) {
	res, err := sandbox.RestrictBind(sandbox.Off, nil)
	if err != nil || res.Enforced {
		t.Fatalf("Off: %+v, %v", res, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("bind after Off: %v", err)
	}
	ln.Close()
}

func TestParseMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want sandbox.Mode
		err  bool
	}{
		{"", sandbox.Auto, false},
		{"auto", sandbox.Auto, false},
		{"REQUIRE", sandbox.Require, false},
		{" off ", sandbox.Off, false},
		{"on", "", true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := sandbox.ParseMode(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("ParseMode(%q) = %q, %v", tc.in, got, err)
			}
		})
	}
}

func TestPortOf(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint16
		err  bool
	}{
		{"127.0.0.1:8080", 8080, false},
		{"[::1]:0", 0, false},
		{"localhost:http", 80, false},
		{"127.0.0.1", 0, true},
		{"127.0.0.1:99999", 0, true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := sandbox.PortOf(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("PortOf(%q) = %d, %v", tc.in, got, err)
			}
		})
	}
}
