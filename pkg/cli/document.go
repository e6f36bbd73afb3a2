package cli

import "github.com/istio-upgrade/kubectl-istio-upgrade/pkg/mesh"

// StatusDocument is the versioned mesh document: status -o json|yaml and precheck --save-snapshot.
type StatusDocument struct {
	TypeMeta      `json:",inline"`
	mesh.Snapshot `json:",inline"`
	Summary       string `json:"summary"`
}

// NewStatusDocument wraps a snapshot.
func NewStatusDocument(s *mesh.Snapshot) StatusDocument {
	return StatusDocument{TypeMeta: NewTypeMeta("MeshStatus"), Snapshot: *s, Summary: mesh.Summary(s)}
}
