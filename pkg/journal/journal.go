// Package journal records, before a step acts, the prior state of every object the step will touch,
// so that `undo` can put it back. Each entry is one ConfigMap in the Istio namespace holding gzipped
// JSON (whole deleted objects, like injector templates, can be large).
package journal

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
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
	// Pending says the action was journaled before it started and never reported its end (the step
	// was stopped mid-action): undo reads the release to learn how far it got.
	Pending bool `json:"pending,omitempty"`
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
	StateRunning  = "running"
	StateInEffect = "in-effect"
	// StateInterrupted is a run that died (killed, OOM, lost connection) with its entry running: the
	// next step to take the lock seals it so, recording how the cluster was left.
	StateInterrupted = "interrupted"
	StateRolledBack  = "rolled-back"
	StateCancelled   = "cancelled"
	StateIncomplete  = "incomplete"
	StateUndone      = "undone"
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
	// KeyUID is the UID of the key Secret the entry was signed with: a Secret replaced since is refused.
	KeyUID string `json:"keyUID,omitempty"`
	// Holder is the lock identity of the run writing the entry: a running entry whose holder no longer
	// holds the lock was interrupted.
	Holder string `json:"holder,omitempty"`
	// Units are the units of work the step began, each recorded before its first write: a rerun of an
	// interrupted entry finishes (gates) those not done.
	Units []Unit `json:"units,omitempty"`
	// Signed says the entry carries this journal's signature (set when read; see Trusted).
	Signed bool `json:"-"`
	// Legacy says the signature is of the older kind (no cluster, no sequence): undone, never resumed.
	Legacy bool `json:"-"`
	// Distrust says why an entry is not signed (set when read).
	Distrust string `json:"-"`
	seq      int
	// claimsSignature says the ConfigMap carries a signature (verified or not).
	claimsSignature bool
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

// Resumable says a rerun of the same command continues this entry rather than starting another: it
// stopped before its end, and this tool signed it (a planted entry is never resumed, and so never
// signed by the resuming run).
func (e *Entry) Resumable() bool {
	return e.UndoneBy == "" && e.Signed && !e.Legacy && e.Unreadable == "" &&
		(e.State == StateCancelled || e.State == StateIncomplete || e.State == StateInterrupted)
}

// Unit is one unit of work of a step (a batch, a node, a move): recorded, with what it is about to
// change, before its first write, and marked done once its gate passed.
type Unit struct {
	Name string `json:"name"`
	// Objects are what the unit changes ("deployment/shop/web", "node/n1").
	Objects []string `json:"objects,omitempty"`
	// Notes are facts its move-back needs (a node was not cordoned before the unit cordoned it).
	Notes map[string]string `json:"notes,omitempty"`
	Done  bool              `json:"done,omitempty"`
}

// InFlight are the units begun and not done: those a rerun must finish before going on.
func (e *Entry) InFlight() []Unit {
	var out []Unit
	for _, u := range e.Units {
		if !u.Done {
			out = append(out, u)
		}
	}
	return out
}

// Journal reads and writes entries in one namespace.
type Journal struct {
	Kube      kubernetes.Interface
	Dynamic   dynamic.Interface
	Namespace string
	Now       func() time.Time
	// Force restores fields others changed since the step too (undo --force).
	Force bool
	// Meta lists the journal's ConfigMaps as metadata (the stale-plan check); nil lists them whole.
	Meta metadata.Interface

	tr      *trust
	listed  bool
	entries []*Entry
	// versions are the resource versions of the journal's ConfigMaps as last listed.
	versions map[string]string
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

// Sanitize strips what the server owns so the object can be re-created or written back.
func Sanitize(obj *unstructured.Unstructured) *unstructured.Unstructured {
	o := obj.DeepCopy()
	unstructured.RemoveNestedField(o.Object, "status")
	for _, f := range []string{"resourceVersion", "uid", "generation", "creationTimestamp", "managedFields", "selfLink"} {
		unstructured.RemoveNestedField(o.Object, "metadata", f)
	}
	return o
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
