package helm

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/releaseutil"
	"sigs.k8s.io/yaml"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/journal"
)

// objects are the objects a release's manifest holds, namespaced ones without a namespace placed in
// the release's (as helm applies them).
func objects(manifest, namespace string) []Object {
	var out []Object
	for _, doc := range releaseutil.SplitManifests(manifest) {
		var m struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name        string            `json:"name"`
				Namespace   string            `json:"namespace"`
				Annotations map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if yaml.Unmarshal([]byte(doc), &m) != nil || m.Kind == "" || m.Metadata.Name == "" {
			continue
		}
		o := Object{Kind: m.Kind, Namespace: m.Metadata.Namespace, Name: m.Metadata.Name, Keep: m.Metadata.Annotations["helm.sh/resource-policy"] == "keep"}
		switch {
		case journal.ClusterScoped[o.Kind] || o.Kind == "CustomResourceDefinition":
			o.Namespace = ""
		case o.Namespace == "":
			o.Namespace = namespace
		}
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// digest is a sha256 over what of the chart renders: metadata, templates, default values and files,
// each in a fixed order, so two stored copies of one chart give one digest.
func digest(c *chart.Chart) string {
	h := sha256.New()
	meta, _ := json.Marshal(c.Metadata)
	vals, _ := json.Marshal(c.Values)
	h.Write(meta)
	h.Write(vals)
	files := append(append([]*chart.File{}, c.Templates...), c.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Name < files[j].Name })
	for _, f := range files {
		h.Write([]byte(f.Name))
		h.Write([]byte{0})
		h.Write(f.Data)
		h.Write([]byte{0})
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Short is the digest as a question shows it (12 hex digits, as image digests are shortened).
func Short(digest string) string {
	if len(digest) > len("sha256:")+12 {
		return digest[:len("sha256:")+12]
	}
	return digest
}
