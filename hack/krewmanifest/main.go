// Command krewmanifest renders the krew plugin manifest from the release archives in dist/,
// with their real sha256 values.
package main

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"
)

type platform struct{ OS, Arch, Archive, SHA256, Bin string }

func main() {
	version := flag.String("version", "", "release version (v-prefixed semver)")
	tmpl := flag.String("template", "krew/istio-upgrade.yaml.tmpl", "manifest template")
	dist := flag.String("dist", "dist", "folder with kubectl-istio_upgrade_<os>_<arch>.tar.gz archives")
	out := flag.String("out", "krew/istio-upgrade.yaml", "manifest to write")
	flag.Parse()
	if err := render(*version, *tmpl, *dist, *out); err != nil {
		fmt.Fprintln(os.Stderr, "krewmanifest:", err)
		os.Exit(1)
	}
}

func render(version, tmplPath, dist, out string) error {
	archives, err := filepath.Glob(filepath.Join(dist, "kubectl-istio_upgrade_*_*.tar.gz"))
	if err != nil || len(archives) == 0 {
		return fmt.Errorf("no archives in %s (run make dist)", dist)
	}
	sort.Strings(archives)
	var ps []platform
	for _, a := range archives {
		base := filepath.Base(a)
		parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(base, "kubectl-istio_upgrade_"), ".tar.gz"), "_")
		if len(parts) != 2 {
			return fmt.Errorf("unexpected archive name %s", base)
		}
		sum, err := fileSHA256(a)
		if err != nil {
			return err
		}
		bin := "kubectl-istio_upgrade"
		if parts[0] == "windows" {
			bin += ".exe"
		}
		ps = append(ps, platform{OS: parts[0], Arch: parts[1], Archive: base, SHA256: sum, Bin: bin})
	}
	t, err := template.ParseFiles(tmplPath)
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	return t.Execute(f, struct {
		Version   string
		Platforms []platform
	}{version, ps})
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
