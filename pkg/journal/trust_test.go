package journal

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// In the plugin the step registry sets the kinds (step.Register); here, those of the steps the tests name.
func TestMain(m *testing.M) {
	SetStepKinds(map[string][]string{
		"migrate-ns": {"Namespace", "Deployment", "StatefulSet", "DaemonSet", "Gateway"},
		"cleanup":    {"Deployment", "Service", "ConfigMap", "ClusterRole", "ClusterRoleBinding"},
	})
	os.Exit(m.Run())
}

func saved(t *testing.T, j *Journal, step string, refs ...ObjectRef) *Entry {
	t.Helper()
	rec := j.Begin(step, "kubectl istio-upgrade "+step)
	for _, r := range refs {
		rec.CaptureObject(r, nil)
	}
	if err := rec.Save(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rec.Entry()
}

func only(t *testing.T, j *Journal, id string) *Entry {
	t.Helper()
	e, err := j.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestSignedEntriesAreTrusted(t *testing.T) {
	j, _ := newFakes()
	e := saved(t, j, "migrate-ns", NamespaceRef("shop"))
	if err := Trusted(only(t, j, e.ID)); err != nil {
		t.Fatalf("an entry the tool wrote: %v", err)
	}
	// Another process (a fresh Journal) reads the key from the Secret.
	other := New(j.Kube, j.Dynamic, j.Namespace)
	if err := Trusted(only(t, other, e.ID)); err != nil {
		t.Errorf("read by another process: %v", err)
	}
}

func TestEditedOrHandMadeEntriesAreNot(t *testing.T) {
	ctx := context.Background()
	j, _ := newFakes()
	e := saved(t, j, "migrate-ns", NamespaceRef("shop"))
	cms := j.Kube.CoreV1().ConfigMaps("istio-system")
	cm, _ := cms.Get(ctx, NamePrefix+e.ID, metav1.GetOptions{})
	// Edited: the same entry made to touch a Secret, signature left as it was.
	forged := *only(t, j, e.ID)
	forged.Objects = []Object{{Ref: ObjectRef{Version: "v1", Resource: "secrets", Kind: "Namespace", Name: "x"}, Existed: true}}
	cm.BinaryData[dataKey] = gz(t, forged)
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Trusted(only(t, New(j.Kube, j.Dynamic, j.Namespace), e.ID)); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("an edited entry: %v", err)
	}
	// Hand-made, with the journal label and no signature.
	made := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: NamePrefix + "0009", Namespace: "istio-system", Labels: map[string]string{LabelJournal: "entry"}},
		BinaryData: map[string][]byte{dataKey: gz(t, Entry{ID: "0009", Step: "migrate-ns"})}}
	if _, err := cms.Create(ctx, made, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := Trusted(only(t, j, "0009")); err == nil {
		t.Error("a hand-made entry is trusted")
	}
}

func TestTrustedChecksKindsAndResources(t *testing.T) {
	secret := ObjectRef{Version: "v1", Resource: "secrets", Kind: "Secret", Namespace: "istio-system", Name: "cacerts"}
	disguised := NamespaceRef("x")
	disguised.Resource = "secrets"
	for name, e := range map[string]*Entry{
		"a kind the step never touches": {ID: "1", Step: "migrate-ns", Signed: true, Objects: []Object{{Ref: DeploymentRef("a", "b")}, {Ref: ServiceRef("istio-system", "istiod")}}},
		"an unknown kind":               {ID: "2", Step: "undo", Signed: true, Objects: []Object{{Ref: secret}}},
		"a kind on another resource":    {ID: "3", Step: "migrate-ns", Signed: true, Objects: []Object{{Ref: disguised}}},
		"an unknown step":               {ID: "4", Step: "rm-rf", Signed: true},
		"a helm action of another step": {ID: "6", Step: "migrate-ns", Signed: true, Helm: []HelmAction{{Release: "istiod", Namespace: "istio-system", Action: HelmUninstall, From: 1}}},
		"an unknown helm action":        {ID: "7", Step: "cleanup", Signed: true, Helm: []HelmAction{{Release: "istiod", Namespace: "istio-system", Action: "install", From: 1}}},
	} {
		if err := Trusted(e); err == nil {
			t.Errorf("%s: trusted", name)
		}
	}
	if err := Trusted(&Entry{ID: "5", Step: "cleanup", Signed: true, Objects: []Object{{Ref: ClusterRoleRef("istiod-clusterrole-1-30")}}}); err != nil {
		t.Errorf("cleanup's ClusterRole: %v", err)
	}
	if err := Trusted(&Entry{ID: "8", Step: "cleanup", Signed: true, Helm: []HelmAction{{Release: "istiod", Namespace: "istio-system", Action: HelmUninstall, From: 1}}}); err != nil {
		t.Errorf("cleanup's helm uninstall: %v", err)
	}
}

func noise(t *testing.T, name string, size int) *unstructured.Unstructured {
	t.Helper()
	b := make([]byte, size)
	_, _ = rand.Read(b)
	return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": "istio-system"}, "data": map[string]any{"x": base64.StdEncoding.EncodeToString(b)}}}
}

// An entry over one ConfigMap is split over parts, read back whole and signed as a whole.
func TestLargeEntriesAreSplit(t *testing.T) {
	ctx := context.Background()
	j, _ := newFakes()
	rec := j.Begin("cleanup", "kubectl istio-upgrade cleanup")
	rec.CaptureObject(ConfigMapRef("istio-system", "big"), noise(t, "big", 2<<20))
	if err := rec.Save(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rec.Save(ctx); err != nil { // an update rewrites the parts
		t.Fatal(err)
	}
	parts, _ := j.Kube.CoreV1().ConfigMaps("istio-system").List(ctx, metav1.ListOptions{LabelSelector: LabelJournal + "=part"})
	if len(parts.Items) < 2 {
		t.Fatalf("%d parts for a ~2.7 MiB entry", len(parts.Items))
	}
	l, err := New(j.Kube, j.Dynamic, j.Namespace).List(ctx)
	if err != nil || len(l) != 1 || Trusted(l[0]) != nil || len(l[0].Objects) != 1 || l[0].Objects[0].State.GetName() != "big" {
		t.Fatalf("read back: %v %+v", err, l)
	}
	// A part edited by hand breaks the signature.
	p := parts.Items[0]
	p.BinaryData[dataKey][10] ^= 0xff
	if _, err := j.Kube.CoreV1().ConfigMaps("istio-system").Update(ctx, &p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if l, _ := New(j.Kube, j.Dynamic, j.Namespace).List(ctx); len(l) != 1 || Trusted(l[0]) == nil {
		t.Errorf("an edited part is trusted: %+v", l)
	}
}

func TestEntryTooLargeChangesNothing(t *testing.T) {
	j, _ := newFakes()
	rec := j.Begin("cleanup", "kubectl istio-upgrade cleanup")
	rec.CaptureObject(ConfigMapRef("istio-system", "big"), noise(t, "big", 8<<20))
	if err := rec.Save(context.Background()); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("want ErrTooLarge, got %v", err)
	}
	if l, _ := j.List(context.Background()); len(l) != 0 {
		t.Errorf("a too large entry was written: %d entries", len(l))
	}
}

func TestDecompressionIsBounded(t *testing.T) {
	ctx := context.Background()
	j, _ := newFakes()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write([]byte(`{"id":"0001","x":"`))
	zeros := make([]byte, 1<<20)
	for range maxDecoded >> 20 {
		zw.Write(zeros)
	}
	zw.Write([]byte(`"}`))
	zw.Close()
	_, err := j.Kube.CoreV1().ConfigMaps("istio-system").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: NamePrefix + "0001", Namespace: "istio-system", Labels: map[string]string{LabelJournal: "entry"}},
		BinaryData: map[string][]byte{dataKey: buf.Bytes()}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := j.List(ctx)
	if err != nil || len(l) != 1 || !strings.Contains(l[0].Unreadable, "decompresses to more than") || Trusted(l[0]) == nil {
		t.Errorf("a gzip bomb must be listed as unreadable and never trusted: %v %+v", err, l)
	}
}

func gz(t *testing.T, e Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(e); err != nil {
		t.Fatal(err)
	}
	zw.Close()
	return buf.Bytes()
}

// An entry copied from another cluster does not verify there: signatures are bound to the kube-system
// namespace's UID.
func TestSignaturesAreBoundToTheCluster(t *testing.T) {
	ctx := context.Background()
	j, _ := newFakes()
	if _, err := j.Kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: "cluster-a"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := saved(t, j, "migrate-ns", NamespaceRef("shop"))
	if err := Trusted(only(t, New(j.Kube, j.Dynamic, j.Namespace), e.ID)); err != nil {
		t.Fatalf("on its own cluster: %v", err)
	}
	// The same Secret and ConfigMap on a cluster whose kube-system has another UID.
	ns, _ := j.Kube.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	ns.UID = "cluster-b"
	if _, err := j.Kube.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got := only(t, New(j.Kube, j.Dynamic, j.Namespace), e.ID)
	if Trusted(got) == nil || !strings.Contains(got.Distrust, "another cluster") {
		t.Errorf("an entry from another cluster is trusted: %+v", got)
	}
}

// An older signed version of an entry put back is refused: the key Secret keeps each entry's newest
// sequence number.
func TestAnOlderVersionPutBackIsRefused(t *testing.T) {
	ctx := context.Background()
	j, _ := newFakes()
	rec := j.Begin("migrate-ns", "kubectl istio-upgrade migrate-ns shop")
	rec.CaptureObject(NamespaceRef("shop"), nil)
	if err := rec.Save(ctx); err != nil {
		t.Fatal(err)
	}
	cms := j.Kube.CoreV1().ConfigMaps("istio-system")
	old, _ := cms.Get(ctx, NamePrefix+rec.Entry().ID, metav1.GetOptions{})
	rec.Entry().UndoneBy = "0002"
	if err := rec.Save(ctx); err != nil {
		t.Fatal(err)
	}
	if e := only(t, New(j.Kube, j.Dynamic, j.Namespace), rec.Entry().ID); Trusted(e) != nil || e.UndoneBy != "0002" {
		t.Fatalf("the newest version: %v %+v", Trusted(e), e)
	}
	cur, _ := cms.Get(ctx, old.Name, metav1.GetOptions{})
	old.ResourceVersion = cur.ResourceVersion
	if _, err := cms.Update(ctx, old, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e := only(t, New(j.Kube, j.Dynamic, j.Namespace), rec.Entry().ID)
	if Trusted(e) == nil || !strings.Contains(e.Distrust, "older version") {
		t.Errorf("the older version put back (not undone) is trusted: %+v", e)
	}
}

// A missing key while signed entries remain is a refusal, never a silent new key.
func TestMissingKeyIsRefusedNotReplaced(t *testing.T) {
	ctx := context.Background()
	j, _ := newFakes()
	saved(t, j, "migrate-ns", NamespaceRef("shop"))
	if err := j.Kube.CoreV1().Secrets("istio-system").Delete(ctx, KeySecret, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	other := New(j.Kube, j.Dynamic, j.Namespace)
	if _, err := other.List(ctx); err != nil {
		t.Fatal(err)
	}
	err := other.Begin("tag-move", "kubectl istio-upgrade tag-move x").Save(ctx)
	if !errors.Is(err, ErrKeyMissing) || !strings.Contains(err.Error(), "0001") {
		t.Fatalf("want ErrKeyMissing naming entry 0001, got %v", err)
	}
	if _, err := j.Kube.CoreV1().Secrets("istio-system").Get(ctx, KeySecret, metav1.GetOptions{}); err == nil {
		t.Errorf("a new key was created")
	}
}

// A key Secret whose data another manager wrote (made by hand) is refused for signing and verifying.
func TestForeignKeySecretIsRefused(t *testing.T) {
	ctx := context.Background()
	j, _ := newFakes()
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: KeySecret, Namespace: "istio-system",
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl-create", Operation: metav1.ManagedFieldsOperationUpdate, FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:data":{".":{},"f:key":{}}}`)}}}},
		Data: map[string][]byte{"key": []byte("0123456789abcdef0123456789abcdef")}}
	if _, err := j.Kube.CoreV1().Secrets("istio-system").Create(ctx, s, metav1.CreateOptions{FieldManager: "kubectl-create"}); err != nil {
		t.Fatal(err)
	}
	err := j.Begin("tag-move", "kubectl istio-upgrade tag-move x").Save(ctx)
	if err == nil || !strings.Contains(err.Error(), "kubectl-create") {
		t.Fatalf("a hand-made key was used: %v", err)
	}
}

// Parts are written before the head that names them; parts no head names (a write that died midway)
// are ignored when reading, and a prune removes them.
func TestPartsWithoutAHeadAreIgnored(t *testing.T) {
	ctx := context.Background()
	j, _ := newFakes()
	rec := j.Begin("cleanup", "kubectl istio-upgrade cleanup")
	rec.CaptureObject(ConfigMapRef("istio-system", "big"), noise(t, "big", 2<<20))
	if err := rec.Save(ctx); err != nil {
		t.Fatal(err)
	}
	// A later version died after its parts: they exist, its head was never written.
	if err := j.putPart(ctx, partName(NamePrefix+rec.Entry().ID, 7, 1), []byte("garbage")); err != nil {
		t.Fatal(err)
	}
	l, err := New(j.Kube, j.Dynamic, j.Namespace).List(ctx)
	if err != nil || len(l) != 1 || Trusted(l[0]) != nil {
		t.Fatalf("the complete version must read back trusted: %v %+v", err, l)
	}
	if err := j.Delete(ctx, nil); err != nil {
		t.Fatal(err)
	}
	parts, _ := j.Kube.CoreV1().ConfigMaps("istio-system").List(ctx, metav1.ListOptions{LabelSelector: LabelJournal + "=part"})
	for _, p := range parts.Items {
		if strings.Contains(p.Name, "-p7-") {
			t.Errorf("orphan part %s kept", p.Name)
		}
	}
	if len(parts.Items) == 0 {
		t.Errorf("the head's own parts were removed")
	}
}
