package journal

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Save writes the entry (creating it on the first call, updating it after). Call it before acting.
func (r *Recorder) Save(ctx context.Context) error {
	if r.entry.User == "" {
		r.entry.User = User(ctx, r.j.Kube)
	}
	if !r.saved {
		for attempt := 0; attempt < 5; attempt++ {
			id, err := r.j.nextID(ctx, attempt > 0)
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

// idName is the name of an entry this tool writes: the prefix and a decimal sequence. Anything else
// carrying the journal label is listed as unreadable and never orders, resumes or undoes.
var idName = regexp.MustCompile(`^` + regexp.QuoteMeta(NamePrefix) + `([0-9]{4,9})$`)

// idNumber is an entry ID's place in the journal's own sequence (0: not one of its IDs).
func idNumber(id string) int {
	if len(id) < 4 || len(id) > 9 {
		return 0
	}
	n, err := strconv.Atoi(id)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

func (j *Journal) nextID(ctx context.Context, refresh bool) (string, error) {
	if !j.listed || refresh {
		if _, err := j.List(ctx); err != nil {
			return "", err
		}
	}
	max := 0
	for name := range j.versions {
		if m := idName.FindStringSubmatch(name); m != nil {
			if n := idNumber(m[1]); n > max {
				max = n
			}
		}
	}
	return fmt.Sprintf("%04d", max+1), nil
}

// ErrTooLarge is an entry over what the journal holds for one entry.
var ErrTooLarge = errors.New("journal entry too large")

const (
	// maxPart bounds the compressed data one ConfigMap holds: 1 MiB, metadata included. A larger entry
	// is split over parts (ConfigMaps NAME-pSEQ-N).
	maxPart = 900 << 10
	// maxParts bounds how many ConfigMaps one entry spans.
	maxParts = 8
	// maxDecoded bounds what reading an entry decompresses.
	maxDecoded = 32 << 20
	// AnnotationParts counts the ConfigMaps of a split entry (absent: one).
	AnnotationParts = "istio-upgrade.io/parts"
)

// partName names part i of version seq of entry name. Parts of a version are written before the head
// that names them, so a head always names complete parts; parts no head names are ignored.
func partName(name string, seq, i int) string {
	if seq == 0 {
		return fmt.Sprintf("%s-part-%d", name, i) // entries written before versions named their parts
	}
	return fmt.Sprintf("%s-p%d-%d", name, seq, i)
}

func (j *Journal) write(ctx context.Context, e *Entry, create bool) error {
	t, err := j.trusted(ctx, true)
	if err != nil {
		return err
	}
	e.KeyUID = string(t.secret.UID)
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
	name := NamePrefix + e.ID
	cms := j.Kube.CoreV1().ConfigMaps(j.Namespace)
	var cur *corev1.ConfigMap
	if !create {
		if cur, err = cms.Get(ctx, name, metav1.GetOptions{}); err != nil {
			return fmt.Errorf("journal: read %s/%s: %w", j.Namespace, name, err)
		}
	}
	seq := t.heads[e.ID] + 1
	if cur != nil {
		if n, err := strconv.Atoi(cur.Annotations[AnnotationSeq]); err == nil && n >= seq {
			seq = n + 1
		}
	}
	// Parts first: the head written after them is what makes the new version exist.
	for i, c := range chunks[1:] {
		if err := j.putPart(ctx, partName(name, seq, i+1), c); err != nil {
			return err
		}
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: j.Namespace,
			Labels: map[string]string{LabelJournal: "entry", LabelStep: labelValue(e.Step), "app.kubernetes.io/managed-by": ManagedBy},
			Annotations: map[string]string{AnnotationSignature: sign(t.key, t.cluster, name, seq, buf.Bytes()),
				AnnotationSeq: strconv.Itoa(seq), AnnotationParts: strconv.Itoa(len(chunks))},
		},
		BinaryData: map[string][]byte{dataKey: chunks[0]},
	}
	var written *corev1.ConfigMap
	if cur == nil {
		// Creating the head claims the ID (AlreadyExists: another step took it).
		if written, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: ManagedBy}); err != nil {
			if !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("journal: create %s/%s: %w", j.Namespace, cm.Name, err)
			}
			return err
		}
	} else {
		up := cur.DeepCopy()
		up.BinaryData, up.Labels = cm.BinaryData, cm.Labels
		if up.Annotations == nil {
			up.Annotations = map[string]string{}
		}
		for k, v := range cm.Annotations {
			up.Annotations[k] = v
		}
		if written, err = cms.Update(ctx, up, metav1.UpdateOptions{FieldManager: ManagedBy}); err != nil {
			return fmt.Errorf("journal: update %s/%s: %w", j.Namespace, cm.Name, err)
		}
		// The previous version's parts are no head's now.
		oldSeq, _ := strconv.Atoi(cur.Annotations[AnnotationSeq])
		oldParts, _ := strconv.Atoi(cur.Annotations[AnnotationParts])
		for i := 1; i < oldParts && i < maxParts; i++ {
			_ = cms.Delete(ctx, partName(name, oldSeq, i), metav1.DeleteOptions{})
		}
	}
	if err := j.advance(ctx, t, e.ID, seq); err != nil {
		return err
	}
	e.Signed, e.seq = true, seq
	j.remember(e, written)
	return nil
}

// remember keeps the listed entries in step with what this process wrote: the journal is read once
// per step.
func (j *Journal) remember(e *Entry, cm *corev1.ConfigMap) {
	if !j.listed {
		return
	}
	j.versions[cm.Name] = cm.ResourceVersion
	for i, x := range j.entries {
		if x.ID == e.ID {
			j.entries[i] = e
			return
		}
	}
	j.entries = append(j.entries, e)
	sortEntries(j.entries)
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

// sortEntries orders entries by the journal's own sequence; names that are not its IDs come first, so
// "the newest entry" is always one of its own.
func sortEntries(es []*Entry) {
	sort.SliceStable(es, func(a, b int) bool {
		na, nb := idNumber(es[a].ID), idNumber(es[b].ID)
		if na != nb {
			return na < nb
		}
		return es[a].ID < es[b].ID
	})
}

// List reads every entry, oldest first, and keeps them: Entries returns them again without a read.
func (j *Journal) List(ctx context.Context) ([]*Entry, error) {
	l, err := j.Kube.CoreV1().ConfigMaps(j.Namespace).List(ctx, metav1.ListOptions{LabelSelector: LabelJournal + "=entry"})
	if err != nil {
		return nil, fmt.Errorf("journal: list in %s: %w", j.Namespace, err)
	}
	t, _ := j.trusted(ctx, false)
	out := make([]*Entry, 0, len(l.Items))
	versions := map[string]string{}
	for i := range l.Items {
		cm := &l.Items[i]
		versions[cm.Name] = cm.ResourceVersion
		var e *Entry
		if idName.MatchString(cm.Name) {
			e, err = j.decode(ctx, cm, t)
		} else {
			err = fmt.Errorf("%s is not a name this tool gives entries", cm.Name)
		}
		if err != nil {
			// One bad ConfigMap must not stop every step: it is listed, and never replayed.
			e = &Entry{ID: strings.TrimPrefix(cm.Name, NamePrefix), Step: "unreadable", Unreadable: err.Error()}
		}
		e.redact()
		out = append(out, e)
	}
	sortEntries(out)
	j.entries, j.versions, j.listed = out, versions, true
	return out, nil
}

// Entries are the entries as last listed (List when none were).
func (j *Journal) Entries(ctx context.Context) ([]*Entry, error) {
	if j.listed {
		return j.entries, nil
	}
	return j.List(ctx)
}

// Versions are the resource versions of the journal's entries as last listed, by ConfigMap name.
func (j *Journal) Versions() map[string]string { return j.versions }

// Changed says which entries were written, added or removed since the journal was listed, by their
// resource versions (a metadata LIST: nothing is decoded). Empty: nothing changed.
func (j *Journal) Changed(ctx context.Context) ([]string, error) {
	now := map[string]string{}
	opts := metav1.ListOptions{LabelSelector: LabelJournal + "=entry"}
	var items []metav1.Object
	if j.Meta != nil {
		l, err := j.Meta.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace(j.Namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("journal: list in %s: %w", j.Namespace, err)
		}
		for i := range l.Items {
			items = append(items, &l.Items[i])
		}
	} else {
		l, err := j.Kube.CoreV1().ConfigMaps(j.Namespace).List(ctx, opts)
		if err != nil {
			return nil, fmt.Errorf("journal: list in %s: %w", j.Namespace, err)
		}
		for i := range l.Items {
			items = append(items, &l.Items[i])
		}
	}
	for _, m := range items {
		now[m.GetName()] = m.GetResourceVersion()
	}
	var out []string
	for name, rv := range now {
		if was, ok := j.versions[name]; !ok || was != rv {
			out = append(out, strings.TrimPrefix(name, NamePrefix))
		}
	}
	for name := range j.versions {
		if _, ok := now[name]; !ok {
			out = append(out, strings.TrimPrefix(name, NamePrefix)+" (deleted)")
		}
	}
	sort.Strings(out)
	return out, nil
}

// Get returns one entry by ID.
func (j *Journal) Get(ctx context.Context, id string) (*Entry, error) {
	cm, err := j.Kube.CoreV1().ConfigMaps(j.Namespace).Get(ctx, NamePrefix+id, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	t, _ := j.trusted(ctx, false)
	return j.decode(ctx, cm, t)
}

// Update rewrites an existing entry (used to mark it undone).
func (j *Journal) Update(ctx context.Context, e *Entry) error { return j.write(ctx, e, false) }

func (j *Journal) decode(ctx context.Context, cm *corev1.ConfigMap, t *trust) (*Entry, error) {
	data := cm.BinaryData[dataKey]
	if p := cm.Annotations[AnnotationParts]; p != "" && p != "1" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > maxParts {
			return nil, fmt.Errorf("journal: %s: %s %q", cm.Name, AnnotationParts, p)
		}
		seq := 0
		if s, ok := cm.Annotations[AnnotationSeq]; ok {
			if seq, err = strconv.Atoi(s); err != nil || seq < 1 {
				return nil, fmt.Errorf("journal: %s: %s %q", cm.Name, AnnotationSeq, s)
			}
		}
		data = append([]byte{}, data...)
		for i := 1; i < n; i++ {
			part, err := j.Kube.CoreV1().ConfigMaps(j.Namespace).Get(ctx, partName(cm.Name, seq, i), metav1.GetOptions{})
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
	e.claimsSignature = cm.Annotations[AnnotationSignature] != ""
	t.verify(e, cm, data)
	return e, nil
}

// Prunable says which entries a prune keeping the newest keep entries, and those younger than
// maxAge (0: no age limit), removes. Entries still running are kept.
func Prunable(entries []*Entry, keep int, maxAge time.Duration, now time.Time) []*Entry {
	var out []*Entry
	for i, e := range entries {
		newest := len(entries) - i
		young := maxAge > 0 && now.Sub(e.Time) < maxAge
		if e.State == StateRunning || newest <= keep || young {
			continue
		}
		out = append(out, e)
	}
	return out
}

// Delete removes entries with their parts, and their sequence numbers from the key Secret.
func (j *Journal) Delete(ctx context.Context, entries []*Entry) error {
	cms := j.Kube.CoreV1().ConfigMaps(j.Namespace)
	var ids []string
	for _, e := range entries {
		name := NamePrefix + e.ID
		cm, err := cms.Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("journal: read %s/%s: %w", j.Namespace, name, err)
		}
		seq, _ := strconv.Atoi(cm.Annotations[AnnotationSeq])
		parts, _ := strconv.Atoi(cm.Annotations[AnnotationParts])
		// The head first: parts without a head are ignored, a head without its parts is not.
		if err := cms.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &cm.ResourceVersion}}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("journal: delete %s/%s: %w", j.Namespace, name, err)
		}
		for i := 1; i < parts && i < maxParts; i++ {
			_ = cms.Delete(ctx, partName(name, seq, i), metav1.DeleteOptions{})
		}
		ids = append(ids, e.ID)
	}
	if err := j.deleteOrphanParts(ctx); err != nil {
		return err
	}
	if len(ids) == 0 {
		return nil
	}
	j.listed = false
	return j.forget(ctx, ids)
}

// deleteOrphanParts removes parts no head names (a write that died between its parts and its head).
func (j *Journal) deleteOrphanParts(ctx context.Context) error {
	cms := j.Kube.CoreV1().ConfigMaps(j.Namespace)
	heads, err := cms.List(ctx, metav1.ListOptions{LabelSelector: LabelJournal + "=entry"})
	if err != nil {
		return fmt.Errorf("journal: list in %s: %w", j.Namespace, err)
	}
	named := map[string]bool{}
	for _, h := range heads.Items {
		seq, _ := strconv.Atoi(h.Annotations[AnnotationSeq])
		parts, _ := strconv.Atoi(h.Annotations[AnnotationParts])
		for i := 1; i < parts && i < maxParts; i++ {
			named[partName(h.Name, seq, i)] = true
		}
	}
	parts, err := cms.List(ctx, metav1.ListOptions{LabelSelector: LabelJournal + "=part"})
	if err != nil {
		return fmt.Errorf("journal: list in %s: %w", j.Namespace, err)
	}
	for _, p := range parts.Items {
		if !named[p.Name] && strings.HasPrefix(p.Name, NamePrefix) {
			_ = cms.Delete(ctx, p.Name, metav1.DeleteOptions{})
		}
	}
	return nil
}
