// Package journal records, before a step acts, the prior state of every object the step will touch,
// so that `undo` can put it back. Each entry is one ConfigMap in the Istio namespace holding gzipped
// JSON (whole deleted objects, like injector templates, can be large).
package journal

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// Labels and keys of journal ConfigMaps.
const (
	NamePrefix   = "istio-upgrade-journal-"
	LabelJournal = "istio-upgrade.io/journal"
	LabelStep    = "istio-upgrade.io/step"
	ManagedBy    = "kubectl-istio-upgrade"
	dataKey      = "entry.json.gz"
)

// ObjectRef names an object by resource.
type ObjectRef struct {
	Group     string `json:"group"`
	Version   string `json:"version"`
	Resource  string `json:"resource"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// GVR returns the object's GroupVersionResource.
func (r ObjectRef) GVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: r.Group, Version: r.Version, Resource: r.Resource}
}

func (r ObjectRef) String() string {
	k := strings.ToLower(r.Kind)
	if r.Namespace != "" {
		return r.Namespace + "/" + k + "/" + r.Name
	}
	return k + "/" + r.Name
}

// Object is the state of one object before the step acted on it.
type Object struct {
	Ref ObjectRef `json:"ref"`
	// Existed is false for an object the step created: undo deletes it.
	Existed bool `json:"existed"`
	// State is the object as it was (server-managed fields removed).
	State *unstructured.Unstructured `json:"state,omitempty"`
	// Left says After, Gone and UID record the object as the step left it (entries written before
	// this existed lack it): undo then puts back only the fields the step changed.
	Left  bool                       `json:"left,omitempty"`
	After *unstructured.Unstructured `json:"after,omitempty"`
	Gone  bool                       `json:"gone,omitempty"`
	UID   string                     `json:"uid,omitempty"`
	// Slim says only what undo reads was recorded (a workload's restart stamp): never written back.
	Slim bool `json:"slim,omitempty"`
}

// HelmAction is one helm command a step ran: an upgrade that set one value on the release's own chart,
// an uninstall that kept the release's history, or an install. From is the version deployed before
// (none for an install); To the version the action left (an uninstall leaves From, uninstalled).
type HelmAction struct {
	Release   string `json:"release"`
	Namespace string `json:"namespace"`
	Action    string `json:"action"`
	Set       string `json:"set,omitempty"`
	// Source is, for an install, the release whose chart (and values) it installed.
	Source string `json:"source,omitempty"`
	From   int    `json:"from"`
	To     int    `json:"to,omitempty"`
}

// Helm actions.
const (
	HelmUpgrade   = "upgrade"
	HelmUninstall = "uninstall"
	HelmInstall   = "install"
)

// Command is the helm command line the action ran.
func (h HelmAction) Command() string {
	switch h.Action {
	case HelmUninstall:
		return fmt.Sprintf("helm uninstall %s -n %s --keep-history", h.Release, h.Namespace)
	case HelmInstall:
		return fmt.Sprintf("helm install %s -n %s (the chart of release %s; %s)", h.Release, h.Namespace, h.Source, h.Set)
	}
	return fmt.Sprintf("helm upgrade %s -n %s --reuse-values --set %s", h.Release, h.Namespace, h.Set)
}

// UndoVerb is what undo did to the release, for its result and history.
func (h HelmAction) UndoVerb() string {
	if h.Action == HelmInstall {
		return "uninstalled"
	}
	return fmt.Sprintf("rolled back to version %d", h.From)
}

// UndoCommand is the helm command undo runs for it.
func (h HelmAction) UndoCommand() string {
	if h.Action == HelmInstall {
		return fmt.Sprintf("helm uninstall %s -n %s", h.Release, h.Namespace)
	}
	return fmt.Sprintf("helm rollback %s %d -n %s", h.Release, h.From, h.Namespace)
}

// States of an entry. An entry is written as running before the first change and ends in one of the
// others; undone is told by UndoneBy.
const (
	StateRunning    = "running"
	StateInEffect   = "in-effect"
	StateRolledBack = "rolled-back"
	StateCancelled  = "cancelled"
	StateIncomplete = "incomplete"
	StateUndone     = "undone"
)

// Entry is one command's record: one undoable unit.
type Entry struct {
	ID   string `json:"id"`
	Step string `json:"step"`
	// Command is the command line rebuilt from parsed flags, credentials left out.
	Command string `json:"command,omitempty"`
	// Args is the raw command line of entries written before Command existed (read only).
	Args     []string  `json:"args,omitempty"`
	User     string    `json:"user"`
	Time     time.Time `json:"time"`
	State    string    `json:"state,omitempty"`
	Objects  []Object  `json:"objects"`
	UndoOf   string    `json:"undoOf,omitempty"`
	UndoneBy string    `json:"undoneBy,omitempty"`
	// Done lists what the step did ("kind/name verb"), so a cancelled or failed entry says exactly how far it got.
	Done []string `json:"done,omitempty"`
	// Notes are facts a later step needs (e.g. when the last proxy left a revision).
	Notes map[string]string `json:"notes,omitempty"`
	// Helm lists the helm commands the step ran through the Helm SDK, in order: undo rolls each
	// release back (newest first), Helm's own history holding the objects.
	Helm []HelmAction `json:"helm,omitempty"`
	// Signed says the entry carries this journal's signature (set when read; see Trusted).
	Signed bool `json:"-"`
	// Unreadable says why a ConfigMap with the journal label could not be read as an entry.
	Unreadable string `json:"-"`
}

// CommandLine is how history shows the entry's command.
func (e *Entry) CommandLine() string {
	if e.Command != "" {
		return e.Command
	}
	return strings.Join(e.Args, " ")
}

// Status is the entry's state for people: undone wins, entries from before states existed are in effect.
func (e *Entry) Status() string {
	switch {
	case e.UndoneBy != "":
		return StateUndone
	case e.State == "":
		return StateInEffect
	}
	return e.State
}

// Resumable says a rerun of the same command continues this entry rather than starting another.
func (e *Entry) Resumable() bool {
	return e.UndoneBy == "" && (e.State == StateCancelled || e.State == StateIncomplete)
}

// Journal reads and writes entries in one namespace.
type Journal struct {
	Kube      kubernetes.Interface
	Dynamic   dynamic.Interface
	Namespace string
	Now       func() time.Time
	// Force restores fields others changed since the step too (undo --force).
	Force bool

	signKey []byte
}

// New returns a journal in the Istio namespace.
func New(k kubernetes.Interface, d dynamic.Interface, istioNamespace string) *Journal {
	return &Journal{Kube: k, Dynamic: d, Namespace: istioNamespace, Now: time.Now}
}

// Recorder collects the prior state of the objects one step will touch.
type Recorder struct {
	j     *Journal
	entry *Entry
	saved bool
	seen  map[ObjectRef]bool
}

// Begin starts an entry for a step with its command line.
func (j *Journal) Begin(step, command string) *Recorder {
	return &Recorder{j: j, entry: &Entry{Step: step, Command: command, State: StateRunning, Time: j.Now().UTC().Truncate(time.Second), Objects: []Object{}}, seen: map[ObjectRef]bool{}}
}

// Resume continues an entry a cancelled or failed run left: what it recorded first stays the state undo
// restores, objects new to this run are added.
func (j *Journal) Resume(e *Entry) *Recorder {
	r := &Recorder{j: j, entry: e, saved: true, seen: map[ObjectRef]bool{}}
	for _, o := range e.Objects {
		r.seen[o.Ref] = true
	}
	e.State = StateRunning
	return r
}

// Entry returns the entry being recorded.
func (r *Recorder) Entry() *Entry { return r.entry }

// Capture records the current state of ref (or that it does not exist yet). The first capture of an
// object wins: its state before the step is what undo restores.
func (r *Recorder) Capture(ctx context.Context, refs ...ObjectRef) error {
	return r.capture(ctx, false, refs)
}

// CaptureSlim records objects whose undo only reads their restart stamp (the workloads migrate-ns
// restarts): their whole spec would fill the entry for nothing.
func (r *Recorder) CaptureSlim(ctx context.Context, refs ...ObjectRef) error {
	return r.capture(ctx, true, refs)
}

func (r *Recorder) capture(ctx context.Context, isSlim bool, refs []ObjectRef) error {
	var want []ObjectRef
	for _, ref := range refs {
		if !r.seen[ref] {
			want = append(want, ref)
		}
	}
	objs, err := r.j.read(ctx, want)
	if err != nil {
		return err
	}
	for _, ref := range want {
		if r.seen[ref] {
			continue
		}
		if obj := objs[ref]; obj != nil {
			r.entry.Objects = append(r.entry.Objects, Object{Ref: ref, Existed: true, Slim: isSlim, State: stateOf(obj, isSlim)})
		} else {
			r.entry.Objects = append(r.entry.Objects, Object{Ref: ref, Slim: isSlim})
		}
		r.seen[ref] = true
	}
	return nil
}

// listedKinds are the resources every step may list anyway (the mesh read lists them): several of one
// namespace are read with one LIST, not a GET each (a migration of 300 workloads read each twice).
var listedKinds = map[schema.GroupResource]bool{{Resource: "namespaces"}: true, {Group: "apps", Resource: "deployments"}: true,
	{Group: "apps", Resource: "statefulsets"}: true, {Group: "apps", Resource: "daemonsets"}: true}

// listFrom is how many objects of one resource and namespace make a LIST cheaper than their GETs.
const listFrom = 3

// read returns the objects of refs as they are now; an absent one has no entry.
func (j *Journal) read(ctx context.Context, refs []ObjectRef) (map[ObjectRef]*unstructured.Unstructured, error) {
	out := map[ObjectRef]*unstructured.Unstructured{}
	type group struct {
		gvr schema.GroupVersionResource
		ns  string
	}
	groups := map[group][]ObjectRef{}
	var order []group
	for _, ref := range refs {
		g := group{ref.GVR(), ref.Namespace}
		if groups[g] == nil {
			order = append(order, g)
		}
		groups[g] = append(groups[g], ref)
	}
	for _, g := range order {
		members := groups[g]
		if len(members) >= listFrom && listedKinds[g.gvr.GroupResource()] {
			l, err := j.Dynamic.Resource(g.gvr).Namespace(g.ns).List(ctx, metav1.ListOptions{})
			if err == nil {
				byName := map[string]*unstructured.Unstructured{}
				for i := range l.Items {
					byName[l.Items[i].GetName()] = &l.Items[i]
				}
				for _, ref := range members {
					if obj := byName[ref.Name]; obj != nil {
						out[ref] = obj
					}
				}
				continue
			}
			// Not allowed to list, or failed: ask one by one.
		}
		for _, ref := range members {
			obj, err := j.Dynamic.Resource(ref.GVR()).Namespace(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
			case err != nil:
				return nil, fmt.Errorf("journal: read %s: %w", ref, err)
			default:
				out[ref] = obj
			}
		}
	}
	return out, nil
}

// stateOf is what the journal keeps of an object: all of it, or its restart stamp alone.
func stateOf(obj *unstructured.Unstructured, isSlim bool) *unstructured.Unstructured {
	if isSlim {
		return slim(obj)
	}
	return Sanitize(obj)
}

// slim keeps an object's identity and its pod template's annotations.
func slim(obj *unstructured.Unstructured) *unstructured.Unstructured {
	out := &unstructured.Unstructured{Object: map[string]any{}}
	out.SetAPIVersion(obj.GetAPIVersion())
	out.SetKind(obj.GetKind())
	out.SetNamespace(obj.GetNamespace())
	out.SetName(obj.GetName())
	if a, ok, _ := unstructured.NestedStringMap(obj.Object, "spec", "template", "metadata", "annotations"); ok {
		_ = unstructured.SetNestedStringMap(out.Object, a, "spec", "template", "metadata", "annotations")
	}
	return out
}

// CaptureAfter records how the step left every object of the entry: undo compares the live object with
// it, to put back only what the step changed and to see what others changed since.
func (r *Recorder) CaptureAfter(ctx context.Context) error {
	refs := make([]ObjectRef, len(r.entry.Objects))
	for i, o := range r.entry.Objects {
		refs[i] = o.Ref
	}
	objs, err := r.j.read(ctx, refs)
	if err != nil {
		return err
	}
	for i := range r.entry.Objects {
		o := &r.entry.Objects[i]
		if obj := objs[o.Ref]; obj != nil {
			o.Gone, o.UID, o.After = false, string(obj.GetUID()), stateOf(obj, o.Slim)
		} else {
			o.After, o.Gone, o.UID = nil, true, ""
		}
		o.Left = true
	}
	return nil
}

// DropAfter forgets the after states (an entry too large to hold them): undo then writes back whole objects.
func (r *Recorder) DropAfter() {
	for i := range r.entry.Objects {
		o := &r.entry.Objects[i]
		o.Left, o.After, o.Gone, o.UID = false, nil, false, ""
	}
}

// CaptureObject records an object already read (saves a GET).
func (r *Recorder) CaptureObject(ref ObjectRef, obj *unstructured.Unstructured) {
	if r.seen[ref] {
		return
	}
	r.seen[ref] = true
	if obj == nil {
		r.entry.Objects = append(r.entry.Objects, Object{Ref: ref})
		return
	}
	r.entry.Objects = append(r.entry.Objects, Object{Ref: ref, Existed: true, State: Sanitize(obj)})
}

// Note attaches a fact to the entry.
func (r *Recorder) Note(key, value string) {
	if r.entry.Notes == nil {
		r.entry.Notes = map[string]string{}
	}
	r.entry.Notes[key] = value
}

// Save writes the entry (creating it on the first call, updating it after). Call it before acting.
func (r *Recorder) Save(ctx context.Context) error {
	if r.entry.User == "" {
		r.entry.User = User(ctx, r.j.Kube)
	}
	if !r.saved {
		for attempt := 0; attempt < 5; attempt++ {
			id, err := r.j.nextID(ctx)
			if err != nil {
				return err
			}
			r.entry.ID = id
			err = r.j.write(ctx, r.entry, true)
			if apierrors.IsAlreadyExists(err) {
				continue
			}
			if err != nil {
				return err
			}
			r.saved = true
			return nil
		}
		return fmt.Errorf("journal: could not allocate an entry id")
	}
	return r.j.write(ctx, r.entry, false)
}

// Sanitize strips what the server owns so the object can be re-created or written back.
func Sanitize(obj *unstructured.Unstructured) *unstructured.Unstructured {
	o := obj.DeepCopy()
	unstructured.RemoveNestedField(o.Object, "status")
	for _, f := range []string{"resourceVersion", "uid", "generation", "creationTimestamp", "managedFields", "selfLink"} {
		unstructured.RemoveNestedField(o.Object, "metadata", f)
	}
	return o
}

func (j *Journal) nextID(ctx context.Context) (string, error) {
	entries, err := j.List(ctx)
	if err != nil {
		return "", err
	}
	max := 0
	for _, e := range entries {
		if n, err := strconv.Atoi(e.ID); err == nil && n > max {
			max = n
		}
	}
	return fmt.Sprintf("%04d", max+1), nil
}

// ErrTooLarge is an entry over what the journal holds for one entry.
var ErrTooLarge = errors.New("journal entry too large")

const (
	// maxPart bounds the compressed data one ConfigMap holds: 1 MiB, metadata included. A larger entry
	// is split over parts (ConfigMaps NAME-part-N).
	maxPart = 900 << 10
	// maxParts bounds how many ConfigMaps one entry spans.
	maxParts = 8
	// maxDecoded bounds what reading an entry decompresses.
	maxDecoded = 32 << 20
	// AnnotationParts counts the ConfigMaps of a split entry (absent: one).
	AnnotationParts = "istio-upgrade.io/parts"
)

func partName(name string, i int) string { return fmt.Sprintf("%s-part-%d", name, i) }

func (j *Journal) write(ctx context.Context, e *Entry, create bool) error {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(e); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	data := buf.Bytes()
	var chunks [][]byte
	for len(data) > maxPart {
		chunks, data = append(chunks, data[:maxPart]), data[maxPart:]
	}
	chunks = append(chunks, data)
	if len(chunks) > maxParts {
		return fmt.Errorf("%w: entry %s is %d KiB compressed, %d KiB at most", ErrTooLarge, e.ID, buf.Len()>>10, maxParts*maxPart>>10)
	}
	key, err := j.key(ctx, true)
	if err != nil {
		return err
	}
	name := NamePrefix + e.ID
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: j.Namespace,
			Labels:      map[string]string{LabelJournal: "entry", LabelStep: labelValue(e.Step), "app.kubernetes.io/managed-by": ManagedBy},
			Annotations: map[string]string{AnnotationSignature: sign(key, name, buf.Bytes()), AnnotationParts: strconv.Itoa(len(chunks))},
		},
		BinaryData: map[string][]byte{dataKey: chunks[0]},
	}
	cms := j.Kube.CoreV1().ConfigMaps(j.Namespace)
	before := 1
	if create {
		// The head first: creating it claims the ID (AlreadyExists: another step took it).
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: ManagedBy}); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("journal: create %s/%s: %w", j.Namespace, cm.Name, err)
			}
			return err
		}
	} else {
		cur, err := cms.Get(ctx, cm.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("journal: read %s/%s: %w", j.Namespace, cm.Name, err)
		}
		if n, err := strconv.Atoi(cur.Annotations[AnnotationParts]); err == nil {
			before = n
		}
		cur.BinaryData, cur.Labels = cm.BinaryData, cm.Labels
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		for k, v := range cm.Annotations {
			cur.Annotations[k] = v
		}
		if _, err := cms.Update(ctx, cur, metav1.UpdateOptions{FieldManager: ManagedBy}); err != nil {
			return fmt.Errorf("journal: update %s/%s: %w", j.Namespace, cm.Name, err)
		}
	}
	for i, c := range chunks[1:] {
		if err := j.putPart(ctx, partName(name, i+1), c); err != nil {
			return err
		}
	}
	for i := len(chunks); i < before; i++ {
		_ = cms.Delete(ctx, partName(name, i), metav1.DeleteOptions{}) // left over from a larger version
	}
	return nil
}

// putPart creates or updates one part of a split entry.
func (j *Journal) putPart(ctx context.Context, name string, data []byte) error {
	cms := j.Kube.CoreV1().ConfigMaps(j.Namespace)
	part := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: j.Namespace,
		Labels: map[string]string{LabelJournal: "part", "app.kubernetes.io/managed-by": ManagedBy}},
		BinaryData: map[string][]byte{dataKey: data}}
	_, err := cms.Create(ctx, part, metav1.CreateOptions{FieldManager: ManagedBy})
	if apierrors.IsAlreadyExists(err) {
		var cur *corev1.ConfigMap
		if cur, err = cms.Get(ctx, name, metav1.GetOptions{}); err == nil {
			cur.BinaryData = part.BinaryData
			_, err = cms.Update(ctx, cur, metav1.UpdateOptions{FieldManager: ManagedBy})
		}
	}
	if err != nil {
		return fmt.Errorf("journal: write %s/%s: %w", j.Namespace, name, err)
	}
	return nil
}

// labelValue makes a step name ("tag-move --restart") a valid label value ("tag-move-restart"); the entry
// itself keeps the full name.
func labelValue(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_':
			b.WriteRune(r)
		default:
			b.WriteRune('-')
		}
	}
	out := strings.Trim(b.String(), "-_.")
	for strings.Contains(out, "--") {
		out = strings.ReplaceAll(out, "--", "-")
	}
	if len(out) > 63 {
		out = strings.Trim(out[:63], "-_.")
	}
	return out
}

// List returns every entry, oldest first.
func (j *Journal) List(ctx context.Context) ([]*Entry, error) {
	l, err := j.Kube.CoreV1().ConfigMaps(j.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelJournal + "=entry"})
	if err != nil {
		return nil, fmt.Errorf("journal: list in %s: %w", j.Namespace, err)
	}
	key, _ := j.key(ctx, false)
	out := make([]*Entry, 0, len(l.Items))
	for i := range l.Items {
		e, err := j.decode(ctx, &l.Items[i], key)
		if err != nil {
			// One bad ConfigMap must not stop every step: it is listed, and never replayed.
			e = &Entry{ID: strings.TrimPrefix(l.Items[i].Name, NamePrefix), Step: "unreadable", Unreadable: err.Error()}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].ID < out[b].ID })
	return out, nil
}

// Get returns one entry by ID.
func (j *Journal) Get(ctx context.Context, id string) (*Entry, error) {
	cm, err := j.Kube.CoreV1().ConfigMaps(j.Namespace).Get(ctx, NamePrefix+id, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	key, _ := j.key(ctx, false)
	return j.decode(ctx, cm, key)
}

// Update rewrites an existing entry (used to mark it undone).
func (j *Journal) Update(ctx context.Context, e *Entry) error { return j.write(ctx, e, false) }

func (j *Journal) decode(ctx context.Context, cm *corev1.ConfigMap, key []byte) (*Entry, error) {
	data := cm.BinaryData[dataKey]
	if p := cm.Annotations[AnnotationParts]; p != "" && p != "1" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > maxParts {
			return nil, fmt.Errorf("journal: %s: %s %q", cm.Name, AnnotationParts, p)
		}
		data = append([]byte{}, data...)
		for i := 1; i < n; i++ {
			part, err := j.Kube.CoreV1().ConfigMaps(j.Namespace).Get(ctx, partName(cm.Name, i), metav1.GetOptions{})
			if err != nil {
				return nil, fmt.Errorf("journal: %s: part %d: %w", cm.Name, i, err)
			}
			data = append(data, part.BinaryData[dataKey]...)
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("journal: %s: %w", cm.Name, err)
	}
	b, err := io.ReadAll(io.LimitReader(zr, maxDecoded+1))
	if err != nil {
		return nil, fmt.Errorf("journal: %s: %w", cm.Name, err)
	}
	if len(b) > maxDecoded {
		return nil, fmt.Errorf("journal: %s: decompresses to more than %d MiB: not an entry this tool wrote", cm.Name, maxDecoded>>20)
	}
	e := &Entry{}
	if err := json.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("journal: %s: %w", cm.Name, err)
	}
	if NamePrefix+e.ID != cm.Name {
		return nil, fmt.Errorf("journal: %s holds entry %q", cm.Name, e.ID)
	}
	e.Signed = verify(key, cm, data)
	return e, nil
}

// User names who runs the step: the apiserver's answer to SelfSubjectReview, else $USER.
func User(ctx context.Context, k kubernetes.Interface) string {
	r, err := k.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err == nil && r.Status.UserInfo.Username != "" {
		return r.Status.UserInfo.Username
	}
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "unknown"
}
