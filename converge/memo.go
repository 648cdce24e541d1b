package converge

import "sync"

// Memo caches values computed during one run (parsed templates, resolved
// directories), so 200 resources sharing a template parse it once. The
// engine gives every run a fresh Memo; it is safe for concurrent use.
// Values must be immutable once returned.
type Memo struct {
	m sync.Map // string -> *memoEntry
}

type memoEntry struct {
	once sync.Once
	v    any
	err  error
}

// Do returns the value for key, calling fn to compute it the first time.
// A nil Memo computes every time.
func (m *Memo) Do(key string, fn func() (any, error)) (any, error) {
	if m == nil {
		return fn()
	}
	e, ok := m.m.Load(key) // the common case: no entry to allocate
	if !ok {
		e, _ = m.m.LoadOrStore(key, &memoEntry{})
	}
	me := e.(*memoEntry)
	me.once.Do(func() { me.v, me.err = fn() })
	return me.v, me.err
}
