package istio

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	status "github.com/envoyproxy/go-control-plane/envoy/service/status/v3"
	jsoniter "github.com/json-iterator/go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"istio.io/istio/pkg/model"
)

// SynczType is the xDS debug type istiod answers with the sync state of every connected proxy.
const SynczType = model.DebugType + "/syncz"

// Sync states, as istioctl proxy-status prints them.
const (
	StateSynced  = "SYNCED"
	StateStale   = "STALE"
	StateNotSent = "NOT SENT"
	StateError   = "ERROR"
)

// IstiodInfo identifies the istiod that answered.
type IstiodInfo struct {
	ID      string // istiod's POD_NAME
	Version string
}

// ProxySync is one proxy's state as one istiod sees it.
type ProxySync struct {
	ID        string            // xDS node ID
	Type      string            // sidecar, router, ztunnel
	Pod       string            // pod name
	Namespace string            // pod namespace
	IP        string            // pod IP
	Version   string            // proxy's Istio version
	ClusterID string            // proxy's cluster
	Types     map[string]string // short xDS type (CDS, LDS, EDS, RDS, …) → sync state
}

// State folds the per-type states into one: ERROR > STALE > SYNCED; a proxy that was sent nothing
// at all is NOT SENT.
func (p ProxySync) State() string {
	return FoldStates(p.Types)
}

// FoldStates folds per-type states into one proxy state.
func FoldStates(types map[string]string) string {
	if len(types) == 0 {
		return StateNotSent
	}
	synced := false
	stale := false
	for _, s := range types {
		switch s {
		case StateError:
			return StateError
		case StateStale:
			stale = true
		case StateSynced:
			synced = true
		}
	}
	switch {
	case stale:
		return StateStale
	case synced:
		return StateSynced
	}
	return StateNotSent
}

// Dial connects to istiod's xDS port. With a token it uses TLS and the token as a bearer credential
// (istioctl's way to reach 15012), verified by verify (VerifyIstiod) before the token is sent; only
// --insecure-xds passes none. plaintext is for istiod's debug port 15010.
func Dial(ctx context.Context, addr, token string, plaintext bool, verify *tls.Config) (*grpc.ClientConn, error) {
	opts := []grpc.DialOption{grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256 << 20))}
	if plaintext {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	} else {
		conf := verify
		if conf == nil {
			conf = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // reached through the apiserver's port-forward
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
		if token != "" {
			opts = append(opts, grpc.WithPerRPCCredentials(bearer(token)))
		}
	}
	return grpc.NewClient(addr, opts...)
}

// VerifyIstiod accepts only a serving certificate (ServerAuth) that chains to the mesh root (rootPEM, from the
// istio-ca-root-cert ConfigMap) and names an istiod Service of the Istio namespace (istiod.NS.svc,
// istiod-REV.NS.svc): any mesh workload holds a certificate of that root, only istiod one with those
// names. The address is usually an IP or a tunnel, so the name is checked here, not against the address.
func VerifyIstiod(rootPEM []byte, namespace string) (*tls.Config, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(rootPEM) {
		return nil, fmt.Errorf("no certificate in the mesh root")
	}
	// istiod.NS.svc or istiod-REV.NS.svc (REV a DNS label), optionally with the cluster domain: exactly
	// the Services istiod's chart and istioctl name, never "istiod-evil.example" or another namespace's.
	name := regexp.MustCompile(`^istiod(-[a-z0-9]([-a-z0-9]*[a-z0-9])?)?\.` + regexp.QuoteMeta(namespace) + `\.svc(\.cluster\.local)?$`)
	return &tls.Config{
		InsecureSkipVerify: true, //nolint:gosec // verified below, by chain and name
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return fmt.Errorf("istiod sent no certificate")
			}
			certs := make([]*x509.Certificate, len(raw))
			for i, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				certs[i] = c
			}
			inter := x509.NewCertPool()
			for _, c := range certs[1:] {
				inter.AddCert(c)
			}
			if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
				return fmt.Errorf("istiod's certificate does not chain to the mesh root for serving: %w", err)
			}
			for _, n := range certs[0].DNSNames {
				if name.MatchString(n) {
					return nil
				}
			}
			return fmt.Errorf("the certificate names %v, no istiod Service of %s", certs[0].DNSNames, namespace)
		},
	}, nil
}

type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// FetchSyncz asks one istiod for the sync state of every proxy connected to it.
func FetchSyncz(ctx context.Context, conn grpc.ClientConnInterface, namespace string) (IstiodInfo, []ProxySync, error) {
	resp, err := RequestSyncz(ctx, conn, namespace)
	if err != nil {
		return IstiodInfo{}, nil, err
	}
	return ParseSyncz(resp)
}

// RequestSyncz sends one syncz request over an ADS stream and returns istiod's raw answer.
func RequestSyncz(ctx context.Context, conn grpc.ClientConnInterface, namespace string) (*discovery.DiscoveryResponse, error) {
	return debugRequest(ctx, conn, namespace, SynczType, nil)
}

// debugRequest sends one xDS debug request over its own ADS stream and returns the first answer.
func debugRequest(ctx context.Context, conn grpc.ClientConnInterface, namespace, typeURL string, names []string) (*discovery.DiscoveryResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	req := &discovery.DiscoveryRequest{
		Node: &core.Node{
			// A node ID istiod can parse; without PROXY_CONFIG in the metadata this connection is not a
			// proxy and does not show up in anybody's syncz.
			Id:       fmt.Sprintf("sidecar~127.0.0.1~kubectl-istio-upgrade.%s~%s.svc.cluster.local", namespace, namespace),
			Metadata: model.NodeMetadata{Generator: "event", Namespace: namespace, ServiceAccount: "default"}.ToStruct(),
		},
		TypeUrl:       typeURL,
		ResourceNames: names,
	}
	if err := stream.Send(req); err != nil {
		return nil, err
	}
	return stream.Recv()
}

// ParseSyncz decodes a syncz DiscoveryResponse.
func ParseSyncz(resp *discovery.DiscoveryResponse) (IstiodInfo, []ProxySync, error) {
	info := IstiodInfo{}
	if cp := resp.GetControlPlane(); cp != nil {
		var id struct {
			ID   string `json:"ID"`
			Info struct {
				Version string `json:"version"`
			} `json:"info"`
		}
		if err := json.Unmarshal([]byte(cp.Identifier), &id); err == nil {
			info.ID, info.Version = id.ID, id.Info.Version
		}
	}
	out := make([]ProxySync, 0, len(resp.Resources))
	for _, r := range resp.Resources {
		cc := &status.ClientConfig{}
		if err := r.UnmarshalTo(cc); err != nil {
			return info, nil, fmt.Errorf("syncz: decoding %s: %w", r.TypeUrl, err)
		}
		p := ProxySync{ID: cc.GetNode().GetId(), Types: map[string]string{}}
		p.Type, p.IP, p.Pod, p.Namespace = ParseNodeID(p.ID)
		if md := cc.GetNode().GetMetadata().GetFields(); md != nil {
			p.Version = md["ISTIO_VERSION"].GetStringValue()
			p.ClusterID = md["CLUSTER_ID"].GetStringValue()
			if p.Namespace == "" {
				p.Namespace = md["NAMESPACE"].GetStringValue()
			}
		}
		for _, x := range cc.GenericXdsConfigs {
			p.Types[ShortType(x.TypeUrl)] = configStatus(x.ConfigStatus)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return info, out, nil
}

func configStatus(s status.ConfigStatus) string {
	switch s {
	case status.ConfigStatus_SYNCED:
		return StateSynced
	case status.ConfigStatus_STALE:
		return StateStale
	case status.ConfigStatus_ERROR:
		return StateError
	}
	return StateNotSent
}

// ShortType maps an xDS type URL to the three-letter name istioctl prints.
func ShortType(typeURL string) string {
	switch {
	case strings.HasSuffix(typeURL, ".Cluster"):
		return "CDS"
	case strings.HasSuffix(typeURL, ".Listener"):
		return "LDS"
	case strings.HasSuffix(typeURL, ".ClusterLoadAssignment"):
		return "EDS"
	case strings.HasSuffix(typeURL, ".RouteConfiguration"):
		return "RDS"
	case strings.HasSuffix(typeURL, ".TypedExtensionConfig"):
		return "ECDS"
	case strings.HasSuffix(typeURL, ".NameTable"):
		return "NDS"
	case strings.HasSuffix(typeURL, ".Address"):
		return "WDS"
	}
	if i := strings.LastIndex(typeURL, "."); i >= 0 {
		return typeURL[i+1:]
	}
	return typeURL
}

// ParseNodeID splits a proxy ID: syncz reports istiod's parsed form "pod.namespace"; a full xDS node
// ID "type~ip~pod.namespace~namespace.svc.domain" is accepted too.
func ParseNodeID(id string) (typ, ip, pod, namespace string) {
	pod = id
	if parts := strings.Split(id, "~"); len(parts) == 4 {
		typ, ip, pod = parts[0], parts[1], parts[2]
	}
	if i := strings.LastIndex(pod, "."); i >= 0 {
		pod, namespace = pod[:i], pod[i+1:]
	}
	return typ, ip, pod, namespace
}

// DefaultTimeout bounds one syncz exchange.
const DefaultTimeout = 20 * time.Second

// DebugHTTPPort is istiod's HTTP debug port. Its /debug/syncz answers from localhost (a port-forward
// arrives there) and reads each proxy's state under one lock. The xDS syncz (SynczType) takes a proxy's
// read lock twice: a push to that proxy landing in between deadlocks the push and every later syncz
// (seen on the test bed: the proxy never gets config again). A status that polls as often as our gates
// do must not take that risk.
const DebugHTTPPort = 8080

// FetchSynczHTTP asks istiod's /debug/syncz at base ("http://127.0.0.1:PORT").
func FetchSynczHTTP(ctx context.Context, base, namespace string) ([]ProxySync, error) {
	u := base + "/debug/syncz"
	if namespace != "" { // istiod answers for that namespace's proxies only
		u += "?namespace=" + url.QueryEscape(namespace)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("syncz: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return nil, fmt.Errorf("syncz: %s: %s", resp.Status, b)
	}
	return decodeSynczHTTP(io.LimitReader(resp.Body, 256<<20))
}

// readNonce appends a nonce (a string, or null) to buf.
func readNonce(it *jsoniter.Iterator, buf []byte) []byte {
	if it.ReadNil() {
		return buf
	}
	return append(buf, it.ReadStringAsSlice()...)
}

// readResources reads one entry's resources: type URL → sent, acked, lastError, folded into its state.
func readResources(it *jsoniter.Iterator) map[string]string {
	out := map[string]string{}
	var sent, acked []byte
	for typeURL := it.ReadObject(); typeURL != "" && it.Error == nil; typeURL = it.ReadObject() {
		// The nonces are only compared: read in place, not as new strings (two per type per proxy).
		sent, acked = sent[:0], acked[:0]
		var lastError string
		for f := it.ReadObject(); f != "" && it.Error == nil; f = it.ReadObject() {
			switch f {
			case "sent":
				sent = readNonce(it, sent)
			case "acked":
				acked = readNonce(it, acked)
			case "lastError":
				lastError = it.ReadString()
			default:
				it.Skip()
			}
		}
		st := StateStale
		switch {
		case lastError != "":
			st = StateError
		case len(sent) == 0:
			st = StateNotSent
		case bytes.Equal(acked, sent):
			st = StateSynced
		}
		out[ShortType(typeURL)] = st
	}
	return out
}

// ParseSynczHTTP decodes /debug/syncz into the same states the xDS syncz reports (istiod's
// debugSyncStatus: an error, else nothing sent, else acked = sent, else stale). Connections that are not
// proxies are left out, as there: istioctl's and our own debug clients send no cluster ID (istioctl
// claims version 65536.65536.65536; the xDS syncz tells them apart by their missing proxy config).
func ParseSynczHTTP(b []byte) ([]ProxySync, error) {
	return decodeSynczHTTP(bytes.NewReader(b))
}

// decodeSynczHTTP reads the array field by field with json-iterator's streaming iterator (no reflection,
// no map of every entry's resources): at 5,000 proxies the body is about 9 MB per istiod, and decoding it
// with encoding/json was a third of status's CPU.
func decodeSynczHTTP(r io.Reader) ([]ProxySync, error) {
	it := jsoniter.Parse(jsoniter.ConfigDefault, r, 64<<10)
	var out []ProxySync
	if it.WhatIsNext() == jsoniter.InvalidValue && it.Error == io.EOF {
		return nil, fmt.Errorf("syncz: decoding: empty body")
	}
	for it.ReadArray() {
		var p ProxySync
		var proxyType string
		for f := it.ReadObject(); f != "" && it.Error == nil; f = it.ReadObject() {
			switch f {
			case "proxy":
				p.ID = it.ReadString()
			case "proxy_type":
				proxyType = it.ReadString()
			case "istio_version":
				p.Version = it.ReadString()
			case "cluster_id":
				p.ClusterID = it.ReadString()
			case "resources":
				p.Types = readResources(it)
			default:
				it.Skip()
			}
		}
		if it.Error != nil {
			break
		}
		if p.ClusterID == "" || proxyType == "" {
			continue
		}
		p.Type, p.IP, p.Pod, p.Namespace = ParseNodeID(p.ID)
		if p.Type == "" { // the HTTP endpoint names the proxy by pod.namespace, and its type apart
			p.Type = proxyType
		}
		if p.Types == nil {
			p.Types = map[string]string{}
		}
		out = append(out, p)
	}
	if it.Error == nil && it.WhatIsNext() != jsoniter.InvalidValue {
		it.ReportError("syncz", "data after the array")
	}
	if it.Error != nil && it.Error != io.EOF {
		return nil, fmt.Errorf("syncz: decoding: %w", it.Error)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}
