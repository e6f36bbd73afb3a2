package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// Ports are one istiod revision's local listeners.
type Ports struct {
	Base       int `json:"base"`
	HTTP       int `json:"http"`       // debug + /ready (pod port 8080)
	GRPC       int `json:"grpc"`       // plaintext xDS (pod port 15010)
	SecureGRPC int `json:"secureGrpc"` // TLS xDS (pod port 15012)
	HTTPS      int `json:"https"`      // webhooks (pod port 15017)
	Monitoring int `json:"monitoring"` // metrics (pod port 15014)
	Ctrlz      int `json:"ctrlz"`
}

// portBook hands each revision a fixed block of ports, kept in a file so a restarted agent (and the
// e2e tests) find the same ones.
type portBook struct {
	mu   sync.Mutex
	path string
	revs map[string]Ports
}

func loadPorts(dir string) (*portBook, error) {
	b := &portBook{path: filepath.Join(dir, "istiod-ports.json"), revs: map[string]Ports{}}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if raw, err := os.ReadFile(b.path); err == nil {
		_ = json.Unmarshal(raw, &b.revs)
	}
	return b, nil
}

func (b *portBook) get(rev string) Ports {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p, ok := b.revs[rev]; ok {
		return p
	}
	used := []int{}
	for _, p := range b.revs {
		used = append(used, p.Base)
	}
	sort.Ints(used)
	base := 21000
	for _, u := range used {
		if u == base {
			base += 100
		}
	}
	p := Ports{Base: base, HTTP: base + 80, GRPC: base + 10, SecureGRPC: base + 12, HTTPS: base + 17, Monitoring: base + 14, Ctrlz: base + 76}
	b.revs[rev] = p
	raw, _ := json.MarshalIndent(b.revs, "", "  ")
	_ = os.WriteFile(b.path, raw, 0o644)
	return p
}
