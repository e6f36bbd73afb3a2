package istio

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// AnalyzerBinary is the companion executable that runs Istio's analyzers (pkg/istio/analyzer). It ships
// beside the plugin: the analyzers link most of istiod, which would make every command larger and
// slower to start. Its name has no kubectl- prefix, so kubectl does not list it as a plugin.
const AnalyzerBinary = "istio-upgrade-analyze"

// AnalysisMessage is one message of Istio's configuration analysis (what `istioctl analyze` prints),
// in plain fields.
type AnalysisMessage struct {
	// Code is the IST code, "IST0101".
	Code string `json:"code"`
	// Level is Error, Warning or Info.
	Level string `json:"level"`
	// Kind, Namespace and Name name the object; Name is empty for cluster-wide messages.
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Message   string `json:"message"`
	// DocURL is Istio's page for the code.
	DocURL string `json:"docURL"`
}

// Key identifies a message across two analyses of the same cluster (before and after a step).
func (m AnalysisMessage) Key() string {
	return m.Code + " " + m.Kind + " " + m.Namespace + "/" + m.Name + " " + m.Message
}

// AnalyzeOptions say what to analyse and from which control plane's point of view.
type AnalyzeOptions struct {
	// Namespace limits the messages to one namespace ("" = all).
	Namespace string `json:"namespace"`
	// IstioNamespace is where the control plane and its ConfigMaps live.
	IstioNamespace string `json:"istioNamespace"`
	// Revision is the control plane whose view is taken: configuration labelled for another revision is
	// invisible to it, as it is to that istiod. "" is the revision named default.
	Revision string `json:"revision"`
	// MeshConfig is that revision's mesh config (the `mesh` key of its istio-REV ConfigMap); empty reads
	// the istio ConfigMap, as istioctl analyze does.
	MeshConfig string `json:"meshConfig"`
	// KubeFlags are kubectl's connection flags as given to the plugin (--context=…), for the companion.
	KubeFlags []string `json:"kubeFlags"`
	// Timeout bounds the analysis (AnalyzeTimeout when zero): the analyzers wait for informers that
	// never sync when a kind may not be listed.
	Timeout time.Duration `json:"-"`
}

// AnalyzeTimeout is how long an analysis may take by default.
const AnalyzeTimeout = 2 * time.Minute

// AnalysisResult is what the companion prints.
type AnalysisResult struct {
	Messages []AnalysisMessage `json:"messages"`
	// Build is the companion's build (Build()): the plugin refuses one from another archive, whose
	// analyzers and options may not be the ones it was tested with.
	Build string `json:"build"`
}

// build is the version and commit of this build, stamped into the plugin and its companion alike
// (Makefile: -X .../pkg/istio.build).
var build = "dev"

// Build is this executable's build, as the companion reports it.
func Build() string { return build }

// ErrNoAnalyzer says the companion executable is not installed.
var ErrNoAnalyzer = errors.New(AnalyzerBinary + " not found beside the plugin or on PATH (it ships in the same archive; reinstall the plugin)")

// analyzerPath finds the companion: beside this executable first (krew keeps the archive's files
// together and links only the plugin), else on PATH; Analyze then checks it is of the same build.
func analyzerPath() (string, error) {
	if self, err := os.Executable(); err == nil {
		if real, err := filepath.EvalSymlinks(self); err == nil {
			self = real
		}
		p := filepath.Join(filepath.Dir(self), AnalyzerBinary+filepath.Ext(self))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath(AnalyzerBinary); err == nil {
		return p, nil
	}
	return "", ErrNoAnalyzer
}

// Analyze runs Istio's analyzers through the companion executable. Options (credentials among the
// flags) go on its stdin, not its command line.
func Analyze(ctx context.Context, o AnalyzeOptions) ([]AnalysisMessage, error) {
	path, err := analyzerPath()
	if err != nil {
		return nil, err
	}
	in, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	timeout := o.Timeout
	if timeout == 0 {
		timeout = AnalyzeTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, path)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &out, &errb
	detach(cmd)
	if err := cmd.Run(); err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("analysis: not done after %s (the analyzers wait until they could list every kind they read: may this identity list them? istioctl analyze needs the same)", timeout)
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("analysis: %w", ctx.Err())
		}
		return nil, fmt.Errorf("analysis: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	var res AnalysisResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("analysis: reading %s's output: %w", AnalyzerBinary, err)
	}
	if res.Build != build {
		return nil, fmt.Errorf("analysis: %s at %s is build %q, the plugin build %q: install both from one archive", AnalyzerBinary, path, res.Build, build)
	}
	SortAnalysis(res.Messages)
	return res.Messages, nil
}

// SortAnalysis orders messages most severe first, then by code and object.
func SortAnalysis(ms []AnalysisMessage) {
	rank := map[string]int{"Error": 0, "Warning": 1, "Info": 2}
	sort.SliceStable(ms, func(i, j int) bool {
		a, b := ms[i], ms[j]
		if rank[a.Level] != rank[b.Level] {
			return rank[a.Level] < rank[b.Level]
		}
		return a.Key() < b.Key()
	})
}
