// Package istiotest serves what one istiod answers the plugin's debug clients, for unit tests that
// run steps on fake clusters: xDS debug requests (config_dump) over TLS, as istiod does on 15012.
package istiotest

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"istio.io/istio/pkg/model"
)

// RecordedGatewayDump is a gateway's LDS and RDS config dump as istiod 1.30 served it on the test bed.
func RecordedGatewayDump(t testing.TB) []byte {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "testdata", "configdump-gateway-1.30.json"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// XDS serves istiod's xDS debug type on a local TLS listener (HTTP/2, as gRPC needs): a config_dump
// request for proxy ID is answered with dump(ID), or istiod's "not connected" text when dump returns
// nil. It returns the address; the server stops when the test ends.
func XDS(t testing.TB, dump func(proxyID string) []byte) string {
	t.Helper()
	g := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(g, &ads{dump: dump})
	s := httptest.NewUnstartedServer(g)
	s.EnableHTTP2 = true
	s.StartTLS()
	t.Cleanup(func() { g.Stop(); s.Close() })
	return s.Listener.Addr().String()
}

type ads struct {
	discovery.UnimplementedAggregatedDiscoveryServiceServer
	dump func(string) []byte
}

func (a *ads) StreamAggregatedResources(s discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	for {
		req, err := s.Recv()
		if err != nil {
			return nil
		}
		resp := &discovery.DiscoveryResponse{TypeUrl: req.TypeUrl}
		for _, name := range req.ResourceNames {
			q, ok := strings.CutPrefix(name, "config_dump?")
			if !strings.HasPrefix(req.TypeUrl, model.DebugType) || !ok {
				continue
			}
			id := ""
			for _, kv := range strings.Split(q, "&") {
				if v, ok := strings.CutPrefix(kv, "proxyID="); ok {
					id = v
				}
			}
			body := a.dump(id)
			if body == nil {
				body = []byte(fmt.Sprintf("proxy not connected to this Pilot instance: %s", id))
			}
			resp.Resources = append(resp.Resources, &anypb.Any{TypeUrl: req.TypeUrl, Value: body})
		}
		if err := s.Send(resp); err != nil {
			return nil
		}
	}
}
