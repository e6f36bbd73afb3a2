package istio

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"google.golang.org/grpc"

	"istio.io/istio/pkg/model"
)

// RoutingConfig is the part of a gateway proxy's configuration that decides where a request goes:
// its listeners and, per route configuration and virtual host, each route's match and target. Two
// gateways serving the same Gateway and VirtualService resources have equal RoutingConfigs, whichever
// Istio version generated them.
type RoutingConfig struct {
	Listeners []string `json:"listeners"`
	Routes    []string `json:"routes"`
}

// RequestConfigDump asks istiod, over an ADS stream, for the listeners and routes it serves one
// connected proxy (ID "pod.namespace"): the debug endpoint /debug/config_dump?types=LDS,RDS.
func RequestConfigDump(ctx context.Context, conn grpc.ClientConnInterface, namespace, proxyID string) ([]byte, error) {
	resp, err := debugRequest(ctx, conn, namespace, model.DebugType, []string{"config_dump?types=LDS,RDS&proxyID=" + proxyID})
	if err != nil {
		return nil, err
	}
	if len(resp.Resources) != 1 {
		return nil, fmt.Errorf("config_dump of %s: istiod answered %d resources", proxyID, len(resp.Resources))
	}
	return resp.Resources[0].Value, nil
}

// ParseRoutingConfig reads istiod's JSON config dump (an Envoy admin ConfigDump whose configs are
// Listener and RouteConfiguration resources) into a RoutingConfig. A body that is not a config dump is
// istiod's error text (for example, the proxy is not connected to it).
func ParseRoutingConfig(body []byte) (RoutingConfig, error) {
	var dump struct {
		Configs []struct {
			Type         string `json:"@type"`
			Name         string `json:"name"`
			FilterChains []struct {
				Match   map[string]any `json:"filterChainMatch"`
				Filters []struct {
					Name   string `json:"name"`
					Config struct {
						RDS struct {
							RouteConfigName string `json:"routeConfigName"`
						} `json:"rds"`
						Cluster string `json:"cluster"`
					} `json:"typedConfig"`
				} `json:"filters"`
			} `json:"filterChains"`
			VirtualHosts []struct {
				Name    string   `json:"name"`
				Domains []string `json:"domains"`
				Routes  []struct {
					Match    map[string]any `json:"match"`
					Route    map[string]any `json:"route"`
					Redirect map[string]any `json:"redirect"`
					Direct   map[string]any `json:"directResponse"`
				} `json:"routes"`
			} `json:"virtualHosts"`
		} `json:"configs"`
	}
	if err := json.Unmarshal(body, &dump); err != nil {
		return RoutingConfig{}, fmt.Errorf("istiod: %s", strings.TrimSpace(string(body)))
	}
	rc := RoutingConfig{Listeners: []string{}, Routes: []string{}}
	for _, c := range dump.Configs {
		switch {
		case strings.HasSuffix(c.Type, ".Listener"):
			// A listener is its name plus, per filter chain, what it matches and where its terminal
			// filter sends traffic (route configuration or TCP cluster).
			for _, fc := range c.FilterChains {
				to := ""
				for _, f := range fc.Filters {
					switch {
					case f.Config.RDS.RouteConfigName != "":
						to = "rds:" + f.Config.RDS.RouteConfigName
					case f.Config.Cluster != "":
						to = "tcp:" + f.Config.Cluster
					}
				}
				rc.Listeners = append(rc.Listeners, fmt.Sprintf("%s %s -> %s", c.Name, compact(fc.Match), to))
			}
			if len(c.FilterChains) == 0 {
				rc.Listeners = append(rc.Listeners, c.Name)
			}
		case strings.HasSuffix(c.Type, ".RouteConfiguration"):
			for _, vh := range c.VirtualHosts {
				domains := append([]string(nil), vh.Domains...)
				sort.Strings(domains)
				for _, r := range vh.Routes {
					rc.Routes = append(rc.Routes, fmt.Sprintf("%s %s %s -> %s", c.Name, strings.Join(domains, ","), compact(r.Match), target(r.Route, r.Redirect, r.Direct)))
				}
			}
		}
	}
	sort.Strings(rc.Listeners)
	sort.Strings(rc.Routes)
	return rc, nil
}

// target names where a route sends a request: its cluster(s), a redirect or a direct response.
func target(route, redirect, direct map[string]any) string {
	switch {
	case route != nil:
		if c, ok := route["cluster"].(string); ok {
			return c
		}
		if wc, ok := route["weightedClusters"].(map[string]any); ok {
			return "weighted:" + compact(wc["clusters"])
		}
		return compact(route)
	case redirect != nil:
		return "redirect:" + compact(redirect)
	case direct != nil:
		return fmt.Sprintf("direct:%v", direct["status"])
	}
	return "none"
}

// compact renders a JSON value with sorted keys, so equal matches print equally.
func compact(v any) string {
	b, _ := json.Marshal(v) // maps marshal with sorted keys
	return string(b)
}

// CompareRouting lists what the canary's config lacks ("-") or adds ("+") against the reference.
func CompareRouting(ref, canary RoutingConfig) []string {
	var out []string
	diff := func(kind string, a, b []string) {
		in := func(xs []string) map[string]bool {
			m := map[string]bool{}
			for _, x := range xs {
				m[x] = true
			}
			return m
		}
		ma, mb := in(a), in(b)
		for _, x := range a {
			if !mb[x] {
				out = append(out, "- "+kind+" "+x)
			}
		}
		for _, x := range b {
			if !ma[x] {
				out = append(out, "+ "+kind+" "+x)
			}
		}
	}
	diff("listener", ref.Listeners, canary.Listeners)
	diff("route", ref.Routes, canary.Routes)
	return out
}
