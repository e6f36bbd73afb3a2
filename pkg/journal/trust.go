package journal

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The journal signs each entry with a key kept in a Secret beside it: undo and resume replay only
// entries this tool wrote. Writing a ConfigMap with the journal label is not enough to make undo act
// with the operator's rights; one would need to read that Secret too. A signature covers the entry's
// bytes, its name, this cluster (the kube-system namespace's UID: an entry copied from another cluster
// does not verify) and its version's sequence number, which the Secret also keeps per entry (heads):
// an older signed version put back is refused.
const (
	KeySecret           = "istio-upgrade-journal-key"
	AnnotationSignature = "istio-upgrade.io/signature"
	// AnnotationSeq is the sequence number of the entry's version the signature covers.
	AnnotationSeq = "istio-upgrade.io/seq"
	keyField      = "key"
	headsField    = "heads"
)

// ErrKeyMissing is a journal whose signing key Secret is gone while entries signed with it remain:
// never silently replaced by a new key, under which every old entry would read as forged.
var ErrKeyMissing = errors.New("journal signing key missing")

// trust is what verifying and signing need: the key, the Secret holding it, the newest sequence
// number of each entry and this cluster's identity.
type trust struct {
	key     []byte
	secret  *corev1.Secret
	heads   map[string]int
	cluster string
	// why says, when key is nil, why entries cannot be verified.
	why string
}

// clusterID is the kube-system namespace's UID: fixed for a cluster's life, different on every other.
func (j *Journal) clusterID(ctx context.Context) (string, error) {
	ns, err := j.Kube.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil // a cluster without kube-system (fakes): signatures bind to nothing more
	}
	if err != nil {
		return "", fmt.Errorf("journal: reading namespace kube-system (signatures are bound to its UID): %w", err)
	}
	return string(ns.UID), nil
}

// trusted returns the signing state, creating the key Secret when create is set and the journal holds
// no entry signed with an earlier key. Without create, a key that cannot be read leaves t.key nil
// (entries read as unsigned, t.why says why).
func (j *Journal) trusted(ctx context.Context, create bool) (*trust, error) {
	if j.tr != nil && (j.tr.key != nil || !create) {
		return j.tr, nil
	}
	t := &trust{heads: map[string]int{}}
	cluster, err := j.clusterID(ctx)
	if err != nil {
		if create {
			return nil, err
		}
		t.why = err.Error()
		j.tr = t
		return t, nil
	}
	t.cluster = cluster
	secrets := j.Kube.CoreV1().Secrets(j.Namespace)
	s, err := secrets.Get(ctx, KeySecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) && create {
		if signed := j.signedEarlier(); len(signed) > 0 {
			return nil, fmt.Errorf("%w: Secret %s/%s is gone, but journal entries %s were signed with it: restore the Secret from a backup, or retire those entries with `kubectl istio-upgrade history --prune --keep 0` (they can then not be undone or resumed); nothing was changed",
				ErrKeyMissing, j.Namespace, KeySecret, strings.Join(signed, ", "))
		}
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
		t.why = fmt.Sprintf("the signing key %s/%s cannot be read: %v", j.Namespace, KeySecret, err)
		j.tr = t
		return t, nil
	}
	if why := foreignKey(s); why != "" {
		err := fmt.Errorf("journal: signing key %s/%s %s: this tool did not create it, and entries signed with it would run with your rights; delete it if you did not make it on purpose, nothing was changed", j.Namespace, KeySecret, why)
		if create {
			return nil, err
		}
		t.why = err.Error()
		j.tr = t
		return t, nil
	}
	t.key, t.secret = s.Data[keyField], s
	if h := s.Data[headsField]; len(h) > 0 {
		if err := json.Unmarshal(h, &t.heads); err != nil {
			t.key, t.why = nil, fmt.Sprintf("the signing key %s/%s holds unreadable sequence numbers: %v", j.Namespace, KeySecret, err)
		}
	}
	j.tr = t
	return t, nil
}

// foreignKey says why a key Secret is not one this tool made: no key, or its data written by another
// field manager (kubectl create, apply, an editor).
func foreignKey(s *corev1.Secret) string {
	if len(s.Data[keyField]) < 16 {
		return "holds no key"
	}
	for _, m := range s.ManagedFields {
		if m.Manager != ManagedBy && m.FieldsV1 != nil && strings.Contains(string(m.FieldsV1.Raw), `"f:data"`) {
			return fmt.Sprintf("has its data written by %q", m.Manager)
		}
	}
	return ""
}

// signedEarlier names the listed entries that claim a signing key: a new key would orphan them.
func (j *Journal) signedEarlier() []string {
	var out []string
	for _, e := range j.entries {
		if e.KeyUID != "" || e.claimsSignature {
			out = append(out, e.ID)
		}
	}
	return out
}

// advance records seq as entry id's newest version in the key Secret, so an older version put back
// no longer verifies.
func (j *Journal) advance(ctx context.Context, t *trust, id string, seq int) error {
	secrets := j.Kube.CoreV1().Secrets(j.Namespace)
	for attempt := 0; attempt < 5; attempt++ {
		s := t.secret.DeepCopy()
		heads := headsOf(s)
		if heads[id] >= seq {
			t.heads[id] = heads[id]
			return nil
		}
		heads[id] = seq
		b, err := json.Marshal(heads)
		if err != nil {
			return err
		}
		s.Data[headsField] = b
		up, err := secrets.Update(ctx, s, metav1.UpdateOptions{FieldManager: ManagedBy})
		if apierrors.IsConflict(err) {
			if cur, gerr := secrets.Get(ctx, KeySecret, metav1.GetOptions{}); gerr == nil {
				t.secret = cur
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("journal: recording entry %s's sequence in %s/%s: %w", id, j.Namespace, KeySecret, err)
		}
		t.secret, t.heads[id] = up, seq
		return nil
	}
	return fmt.Errorf("journal: recording entry %s's sequence in %s/%s: conflicts kept coming", id, j.Namespace, KeySecret)
}

// forget drops pruned entries from the Secret's sequence numbers.
func (j *Journal) forget(ctx context.Context, ids []string) error {
	t, err := j.trusted(ctx, false)
	if err != nil || t.secret == nil {
		return err
	}
	s := t.secret.DeepCopy()
	heads := headsOf(s)
	for _, id := range ids {
		delete(heads, id)
	}
	b, _ := json.Marshal(heads)
	s.Data[headsField] = b
	up, err := j.Kube.CoreV1().Secrets(j.Namespace).Update(ctx, s, metav1.UpdateOptions{FieldManager: ManagedBy})
	if err != nil {
		return fmt.Errorf("journal: %s/%s: %w", j.Namespace, KeySecret, err)
	}
	t.secret, t.heads = up, heads
	return nil
}

// headsOf reads the newest sequence number of each entry the key Secret keeps (none when it has none).
func headsOf(s *corev1.Secret) map[string]int {
	heads := map[string]int{}
	if h := s.Data[headsField]; len(h) > 0 {
		_ = json.Unmarshal(h, &heads)
	}
	return heads
}

func sign(key []byte, cluster, name string, seq int, data []byte) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "v2\x00%s\x00%s\x00%d\x00", cluster, name, seq)
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

// signV1 is the signature of entries written before signatures were bound to a cluster and a sequence.
func signV1(key []byte, name string, data []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write(data)
	return hex.EncodeToString(m.Sum(nil))
}

// verify sets e.Signed (and e.Legacy), or says in e.Distrust why the entry is not trusted.
func (t *trust) verify(e *Entry, cm *corev1.ConfigMap, data []byte) {
	if t == nil || t.key == nil {
		e.Distrust = "its signature cannot be checked"
		if t != nil && t.why != "" {
			e.Distrust += ": " + t.why
		}
		return
	}
	want, err := hex.DecodeString(cm.Annotations[AnnotationSignature])
	if err != nil || len(want) == 0 {
		e.Distrust = "it carries no signature"
		return
	}
	seqText, ok := cm.Annotations[AnnotationSeq]
	if !ok {
		got, _ := hex.DecodeString(signV1(t.key, cm.Name, data))
		e.Signed, e.Legacy = hmac.Equal(want, got), true
		if !e.Signed {
			e.Distrust = "its signature does not match: edited, or not written by this tool"
		}
		return
	}
	seq, err := strconv.Atoi(seqText)
	got, _ := hex.DecodeString(sign(t.key, t.cluster, cm.Name, seq, data))
	switch {
	case err != nil || !hmac.Equal(want, got):
		e.Distrust = "its signature does not match: edited, copied from another cluster, or not written by this tool"
	case e.KeyUID != "" && t.secret != nil && e.KeyUID != string(t.secret.UID):
		e.Distrust = fmt.Sprintf("it was signed with key Secret UID %s, the Secret is now UID %s", e.KeyUID, t.secret.UID)
	case seq < t.heads[e.ID]:
		e.Distrust = fmt.Sprintf("it is an older version (sequence %d) than the one this tool last wrote (%d): put back by someone", seq, t.heads[e.ID])
	default:
		e.Signed, e.seq = true, seq
	}
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

// stepKinds are the kinds each step may touch, so may its undo: the step registry's (SetStepKinds).
var (
	stepKindsMu sync.RWMutex
	stepKinds   map[string][]string
)

// SetStepKinds sets the kinds each step's entries may name (step.Register passes the registry's);
// undo may name any of them.
func SetStepKinds(byStep map[string][]string) {
	all := map[string]bool{}
	m := map[string][]string{}
	for name, ks := range byStep {
		m[name] = ks
		for _, k := range ks {
			all[k] = true
		}
	}
	var undo []string
	for k := range all {
		undo = append(undo, k)
	}
	sort.Strings(undo)
	m["undo"] = undo
	stepKindsMu.Lock()
	stepKinds = m
	stepKindsMu.Unlock()
}

// Trusted says whether undo may replay e: signed by this tool's key, naming only kinds its step
// touches, each with its exact resource. The error says why not.
func Trusted(e *Entry) error {
	if e.Unreadable != "" {
		return fmt.Errorf("journal entry %s is not an entry this tool can replay: %s", e.ID, e.Unreadable)
	}
	if !e.Signed {
		why := e.Distrust
		if why == "" {
			why = "no valid signature"
		}
		return fmt.Errorf("journal entry %s is not signed by kubectl istio-upgrade (%s; the key is in Secret %s): it will not be replayed", e.ID, why, KeySecret)
	}
	stepKindsMu.RLock()
	allowed, ok := stepKinds[e.Step]
	stepKindsMu.RUnlock()
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
		install := e.Step == "canary-gw" && h.Action == HelmInstall && (h.To >= 1 || h.Pending)
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
