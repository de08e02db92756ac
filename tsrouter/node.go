package tsrouter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"regexp"
	"strings"

	"tailscale.com/client/local"
	"tailscale.com/client/tailscale/apitype"
	"tailscale.com/envknob"
	"tailscale.com/ipn"
	"tailscale.com/tsnet"
)

// NodeOptions configure the router's own tailnet node.
type NodeOptions struct {
	// Hostname is the node name callers use (http://anvil/v1).
	Hostname string
	// Dir holds the node's state (keys); it must persist across restarts
	// unless the node is ephemeral.
	Dir string
	// ControlURL is the coordination server ("" = Tailscale's).
	ControlURL string
	// AuthKey enrols a new node; unused once Dir holds state. Never logged.
	AuthKey string
	// AdvertiseTags are requested for the node.
	AdvertiseTags []string
	// Ephemeral nodes are removed by control when they go offline.
	Ephemeral bool
	// Store overrides the state store (tests use an in-memory one).
	Store ipn.StateStore
	// Logger receives the node's status; tsnet's own chatter goes to debug.
	Logger *slog.Logger
}

// Node is the router's tailnet node.
type Node struct {
	srv *tsnet.Server
	lc  *local.Client
	log *slog.Logger
	// Name is the node's MagicDNS name, IPs its tailnet addresses.
	Name string
	IPs  []string
}

// authURLPattern finds the login URL tsnet prints while it waits for one.
var authURLPattern = regexp.MustCompile(`https?://\S+`)

// StartNode joins the tailnet and returns once the node is running. Without
// an auth key and without enrolled state it logs the login URL (again every
// few seconds) and waits until someone opens it or ctx ends.
func StartNode(ctx context.Context, opts NodeOptions) (*Node, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if opts.Dir != "" {
		if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("tailnet state dir: %w", err)
		}
	}
	srv := &tsnet.Server{
		Hostname:      opts.Hostname,
		Dir:           opts.Dir,
		ControlURL:    opts.ControlURL,
		AuthKey:       opts.AuthKey,
		AdvertiseTags: opts.AdvertiseTags,
		Ephemeral:     opts.Ephemeral,
		Store:         opts.Store,
		Logf: func(format string, args ...any) {
			log.Debug("tsnet: " + fmt.Sprintf(format, args...))
		},
		UserLogf: func(format string, args ...any) {
			msg := fmt.Sprintf(format, args...)
			if strings.Contains(msg, "go to:") {
				if u := authURLPattern.FindString(msg); u != "" {
					log.Warn("tailnet login required: open this URL to add the router to your tailnet, or restart with TS_AUTHKEY set", "url", u)
					return
				}
			}
			log.Debug("tsnet: " + msg)
		},
	}
	log.Info("joining the tailnet", "hostname", opts.Hostname, "control", controlName(opts.ControlURL), "state_dir", opts.Dir, "tags", strings.Join(opts.AdvertiseTags, ","))
	st, err := srv.Up(ctx)
	if err != nil {
		srv.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("joining the tailnet: %w", ctx.Err())
		}
		return nil, fmt.Errorf("joining the tailnet: %w", err)
	}
	lc, err := srv.LocalClient()
	if err != nil {
		srv.Close()
		return nil, err
	}
	n := &Node{srv: srv, lc: lc, log: log}
	if st.Self != nil {
		n.Name = strings.TrimSuffix(st.Self.DNSName, ".")
	}
	for _, ip := range st.TailscaleIPs {
		n.IPs = append(n.IPs, ip.String())
	}
	log.Info("tailnet node up", "name", n.Name, "ips", strings.Join(n.IPs, ","))
	return n, nil
}

func controlName(u string) string {
	if u == "" {
		return "tailscale (default)"
	}
	return u
}

// WhoIs identifies the peer behind a remote address on this node's
// listeners.
func (n *Node) WhoIs(ctx context.Context, remoteAddr string) (*apitype.WhoIsResponse, error) {
	return n.lc.WhoIs(ctx, remoteAddr)
}

// Listen listens on a tailnet TCP address of this node, like ":80".
func (n *Node) Listen(addr string) (net.Listener, error) { return n.srv.Listen("tcp", addr) }

// ListenTLS listens with the tailnet's certificate for this node.
func (n *Node) ListenTLS(addr string) (net.Listener, error) { return n.srv.ListenTLS("tcp", addr) }

// CertDomains are the names the tailnet can issue certificates for; empty
// when the tailnet has HTTPS off (or the control server offers none).
func (n *Node) CertDomains() []string { return n.srv.CertDomains() }

// fetchCert obtains (or loads from state) the node's certificate.
func (n *Node) fetchCert(ctx context.Context, domain string) error {
	_, _, err := n.lc.CertPair(ctx, domain)
	return err
}

// TSNet is the underlying tsnet server, for diagnostics and tests.
func (n *Node) TSNet() *tsnet.Server { return n.srv }

// Close leaves the tailnet (listeners close with it).
func (n *Node) Close() error {
	err := n.srv.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// QuietNetworkDefaults keeps the node from sending traffic anywhere but the
// control server, DERP and peers: no log upload to Tailscale's log service
// and no NAT-PMP/PCP/UPnP probes of the gateway. An operator's explicit
// setting of either variable wins. Call it before StartNode.
func QuietNetworkDefaults() {
	for k, v := range map[string]string{
		"TS_NO_LOGS_NO_SUPPORT": "true",
		"TS_DISABLE_PORTMAPPER": "1",
	} {
		if _, set := os.LookupEnv(k); !set {
			envknob.Setenv(k, v)
		}
	}
}
