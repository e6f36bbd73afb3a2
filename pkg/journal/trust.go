package journal

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The journal signs each entry with a key kept in a Secret beside it: undo replays only entries this
// tool wrote. Writing a ConfigMap with the journal label is not enough to make undo act with the
// operator's rights; one would need to read that Secret too.
const (
	KeySecret           = "istio-upgrade-journal-key"
	AnnotationSignature = "istio-upgrade.io/signature"
	keyField            = "key"
)

// key returns the signing key, creating the Secret when create is set and it does not exist yet.
// Without create, a missing or unreadable Secret gives a nil key: entries then read as unsigned.
func (j *Journal) key(ctx context.Context, create bool) ([]byte, error) {
	if j.signKey != nil {
		return j.signKey, nil
	}
	secrets := j.Kube.CoreV1().Secrets(j.Namespace)
	s, err := secrets.Get(ctx, KeySecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && create {
		k := make([]byte, 32)
		if _, err := rand.Read(k); err != nil {
			return nil, err
		}
		s, err = secrets.Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: KeySecret, Namespace: j.Namespace, Labels: map[string]string{"app.kubernetes.io/managed-by": ManagedBy}},
			Data:       map[string][]byte{keyField: k},
		}, metav1.CreateOptions{FieldManager: ManagedBy})
		if apierrors.IsAlreadyExists(err) {
			s, err = secrets.Get(ctx, KeySecret, metav1.GetOptions{})
		}
	}
	if err != nil {
		if create {
			return nil, fmt.Errorf("journal: signing key %s/%s: %w", j.Namespace, KeySecret, err)
		}
		return nil, nil
	}
	if len(s.Data[keyField]) < 16 {
		return nil, fmt.Errorf("journal: signing key %s/%s holds no key", j.Namespace, KeySecret)
	}
	j.signKey = s.Data[keyField]
	return j.signKey, nil
}

func sign(key []byte, name string, data []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

func verify(key []byte, cm *corev1.ConfigMap, data []byte) bool {
	if key == nil {
		return false
	}
	want, err := hex.DecodeString(cm.Annotations[AnnotationSignature])
	if err != nil {
		return false
	}
	got, _ := hex.DecodeString(sign(key, cm.Name, data))
	return hmac.Equal(want, got)
}

// kinds are the kinds steps record, as the journal names them: a ref must match one exactly.
var kinds = func() map[string]ObjectRef {
	out := map[string]ObjectRef{}
	for _, r := range []ObjectRef{NamespaceRef(""), DeploymentRef("", ""), StatefulSetRef("", ""), DaemonSetRef("", ""),
		ServiceRef("", ""), ConfigMapRef("", ""), MutatingWebhookRef(""), ValidatingWebhookRef(""), HPARef("", ""), PDBRef("", ""),
		ServiceAccountRef("", ""), RoleRef("", ""), RoleBindingRef("", ""), ClusterRoleRef(""), ClusterRoleBindingRef(""), GatewayRef("", "")} {
		out[r.Kind] = r
	}
	return out
}()

// stepKinds are the kinds each step may touch, so may its undo.
var stepKinds = map[string][]string{
	"migrate-ns":   {"Namespace", "Deployment", "StatefulSet", "DaemonSet", "Gateway"},
	"tag-move":     {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Service", "Namespace", "Deployment", "StatefulSet", "DaemonSet", "Gateway"},
	"canary-gw":    {"Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget"},
	"shift":        {"Deployment", "HorizontalPodAutoscaler"},
	"migrate-gw":   {"Deployment", "Gateway", "ConfigMap"},
	"ztunnel-roll": {"DaemonSet"},
	"cleanup": {"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration", "Deployment", "Service", "ConfigMap",
		"HorizontalPodAutoscaler", "PodDisruptionBudget", "ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"},
}

func init() {
	stepKinds["tag-move --restart"] = stepKinds["tag-move"] // entries from before one command was one entry
	all := map[string]bool{}
	for _, ks := range stepKinds {
		for _, k := range ks {
			all[k] = true
		}
	}
	for k := range all {
		stepKinds["undo"] = append(stepKinds["undo"], k)
	}
	sort.Strings(stepKinds["undo"])
}

// Trusted says whether undo may replay e: signed by this tool's key, naming only kinds its step
// touches, each with its exact resource. The error says why not.
func Trusted(e *Entry) error {
	if e.Unreadable != "" {
		return fmt.Errorf("journal entry %s is not an entry this tool can replay: %s", e.ID, e.Unreadable)
	}
	if !e.Signed {
		return fmt.Errorf("journal entry %s is not signed by kubectl istio-upgrade (no valid %s with the key in Secret %s): it was not written by this tool, or was edited, and will not be replayed", e.ID, AnnotationSignature, KeySecret)
	}
	allowed, ok := stepKinds[e.Step]
	if !ok {
		return fmt.Errorf("journal entry %s names an unknown step %q", e.ID, e.Step)
	}
	var bad []string
	for _, o := range e.Objects {
		want, known := kinds[o.Ref.Kind]
		if !known || want.GVR() != o.Ref.GVR() || !contains(allowed, o.Ref.Kind) || (ClusterScoped[o.Ref.Kind] && o.Ref.Namespace != "") {
			bad = append(bad, o.Ref.String()+" ("+o.Ref.GVR().String()+")")
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("journal entry %s (%s) names objects its step never touches: %s", e.ID, e.Step, strings.Join(bad, ", "))
	}
	for _, h := range e.Helm {
		cleanup := e.Step == "cleanup" && (h.Action == HelmUpgrade || h.Action == HelmUninstall) && h.From >= 1
		install := e.Step == "canary-gw" && h.Action == HelmInstall && h.To >= 1
		if (!cleanup && !install) || h.Release == "" || h.Namespace == "" {
			return fmt.Errorf("journal entry %s (%s) names a helm action its step never runs: %+v", e.ID, e.Step, h)
		}
	}
	return nil
}

// ClusterScoped are the kinds steps touch that live outside any namespace.
var ClusterScoped = map[string]bool{"Namespace": true, "MutatingWebhookConfiguration": true, "ValidatingWebhookConfiguration": true, "ClusterRole": true, "ClusterRoleBinding": true}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
