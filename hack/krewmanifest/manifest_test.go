package main

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// manifest is the part of krew's Plugin type its validation looks at.
type manifest struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version          string `json:"version"`
		ShortDescription string `json:"shortDescription"`
		Homepage         string `json:"homepage"`
		Platforms        []struct {
			Selector struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
			URI    string `json:"uri"`
			SHA256 string `json:"sha256"`
			Bin    string `json:"bin"`
		} `json:"platforms"`
	} `json:"spec"`
}

var (
	semverV  = regexp.MustCompile(`^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$`)
	sha256Re = regexp.MustCompile(`^[a-f0-9]{64}$`)
	nameRe   = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

// validate applies krew's manifest rules (krew's pkg/index/validation): the name matches the file
// name, a v-prefixed semver version, a short description of at most 50 characters, lowercase sha256
// values, a uri and bin per platform, and selectors that never match the same os/arch twice.
func validate(path string) []string {
	var errs []string
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	var m manifest
	if err := yaml.UnmarshalStrict(b, &m); err != nil {
		// krew's own manifests carry fields we do not model; only reject unparsable YAML.
		if err := yaml.Unmarshal(b, &m); err != nil {
			return []string{err.Error()}
		}
	}
	if m.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || m.Kind != "Plugin" {
		errs = append(errs, "apiVersion/kind must be krew.googlecontainertools.github.com/v1alpha2 Plugin")
	}
	if want := strings.TrimSuffix(filepath.Base(path), ".yaml"); m.Metadata.Name != want || !nameRe.MatchString(m.Metadata.Name) {
		errs = append(errs, "metadata.name "+m.Metadata.Name+" must equal the file name "+want)
	}
	if !semverV.MatchString(m.Spec.Version) {
		errs = append(errs, "spec.version "+m.Spec.Version+" is not v-prefixed semver")
	}
	if n := len(m.Spec.ShortDescription); n == 0 || n > 50 {
		errs = append(errs, "shortDescription must be 1-50 characters")
	}
	if len(m.Spec.Platforms) == 0 {
		errs = append(errs, "no platforms")
	}
	seen := map[string]bool{}
	for _, p := range m.Spec.Platforms {
		key := p.Selector.MatchLabels["os"] + "/" + p.Selector.MatchLabels["arch"]
		if p.Selector.MatchLabels["os"] == "" || p.Selector.MatchLabels["arch"] == "" || seen[key] {
			errs = append(errs, "platform selector "+key+" is empty or overlaps another")
		}
		seen[key] = true
		if !sha256Re.MatchString(p.SHA256) {
			errs = append(errs, key+": sha256 "+p.SHA256+" is not 64 lowercase hex characters")
		}
		if p.URI == "" || p.Bin == "" {
			errs = append(errs, key+": uri and bin are required")
		}
		if strings.HasPrefix(key, "windows/") != strings.HasSuffix(p.Bin, ".exe") {
			errs = append(errs, key+": bin "+p.Bin+" must end in .exe exactly on windows")
		}
	}
	return errs
}

func TestRenderFromArchives(t *testing.T) {
	dist := t.TempDir()
	for _, p := range []string{"linux_amd64", "darwin_arm64", "windows_amd64"} {
		f, err := os.Create(filepath.Join(dist, "kubectl-istio_upgrade_"+p+".tar.gz"))
		if err != nil {
			t.Fatal(err)
		}
		zw := gzip.NewWriter(f)
		_, _ = zw.Write([]byte(p))
		_ = zw.Close()
		_ = f.Close()
	}
	out := filepath.Join(t.TempDir(), "istio-upgrade.yaml")
	if err := render("v1.2.3", "../../krew/istio-upgrade.yaml.tmpl", dist, out); err != nil {
		t.Fatal(err)
	}
	for _, e := range validate(out) {
		t.Error(e)
	}
	b, _ := os.ReadFile(out)
	if !strings.Contains(string(b), "bin: kubectl-istio_upgrade.exe") || !strings.Contains(string(b), "/v1.2.3/kubectl-istio_upgrade_linux_amd64.tar.gz") {
		t.Errorf("rendered manifest:\n%s", b)
	}
}

func TestValidateCatchesBadManifests(t *testing.T) {
	bad := `apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata: {name: other-name}
spec:
  version: "1.0"
  shortDescription: "This description is much, much longer than fifty characters allow"
  platforms:
  - {selector: {matchLabels: {os: linux, arch: amd64}}, uri: u, sha256: ABCDEF, bin: b}
  - {selector: {matchLabels: {os: linux, arch: amd64}}, uri: u, sha256: ABCDEF, bin: b.exe}
`
	path := filepath.Join(t.TempDir(), "istio-upgrade.yaml")
	if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	errs := validate(path)
	for _, want := range []string{"metadata.name", "semver", "shortDescription", "overlaps", "lowercase hex", ".exe"} {
		found := false
		for _, e := range errs {
			if strings.Contains(e, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("validation missed %q; got %v", want, errs)
		}
	}
}
