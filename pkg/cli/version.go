package cli

import (
	"context"
	"runtime"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"

	"github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"
)

// VersionOptions is `version`.
type VersionOptions struct {
	genericiooptions.IOStreams
	g          *Global
	ClientOnly bool
}

// VersionDocument is printed with -o json|yaml.
type VersionDocument struct {
	TypeMeta      `json:",inline"`
	Client        ClientVersion         `json:"client"`
	ControlPlanes []ControlPlaneVersion `json:"controlPlanes,omitempty"`
}

// ClientVersion is the plugin's own build.
type ClientVersion struct {
	Version   string `json:"version"`
	GitCommit string `json:"gitCommit"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// ControlPlaneVersion is one istiod revision.
type ControlPlaneVersion struct {
	Revision string `json:"revision"`
	Version  string `json:"version"`
	Ready    int32  `json:"ready"`
	Desired  int32  `json:"desired"`
	Default  bool   `json:"default"`
}

func newVersionCommand(g *Global, streams genericiooptions.IOStreams) *cobra.Command {
	o := &VersionOptions{IOStreams: streams, g: g}
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the plugin version and the version of every Istio control plane",
		Example: `  # Client and control plane versions
  kubectl istio-upgrade version

  # Only the plugin's version, without contacting the cluster
  kubectl istio-upgrade version --client -o json`,
		Args: NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.g.Validate(); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.ClientOnly, "client", false, "Print only the client version; do not contact the cluster")
	return cmd
}

// Run prints the versions.
func (o *VersionOptions) Run(ctx context.Context) error {
	doc := VersionDocument{TypeMeta: NewTypeMeta("Version"), Client: ClientVersion{
		Version: version, GitCommit: gitCommit, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH,
	}}
	if !o.ClientOnly {
		c, err := o.g.Clients()
		if err != nil {
			return err
		}
		s, err := mesh.Read(ctx, c, o.g.ReadOptions("", false))
		if err != nil {
			return err
		}
		doc.ControlPlanes = []ControlPlaneVersion{}
		for _, r := range s.Revisions {
			if r.Installed {
				doc.ControlPlanes = append(doc.ControlPlanes, ControlPlaneVersion{Revision: r.Name, Version: r.Version, Ready: r.Ready, Desired: r.Desired, Default: r.Default})
			}
		}
	}
	if o.g.Output != OutputTable {
		return WriteDocument(o.Out, o.g.Output, doc)
	}
	rows := [][]string{{"client", "kubectl-istio_upgrade", doc.Client.Version, ""}}
	for _, cp := range doc.ControlPlanes {
		rows = append(rows, []string{"control-plane", "istiod/" + cp.Revision, cp.Version, Ready(cp.Ready, cp.Desired)})
	}
	return WriteTable(o.Out, []string{"component", "name", "version", "ready"}, rows)
}
