package storetest

// The authd.UserStore contract, run by internal/postgres and internal/sqlite.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/authd/authd"
	"github.com/authd/authd/internal/testenv"
)

// RawInserter is implemented by a backend's test helper (never by the
// backend itself) to insert a row exactly as given, bypassing the store's
// lowercasing and upsert: the rows the original service made, whose emails
// may differ only in letter case. A zero LastVerifiedAt inserts NULL.
type RawInserter interface {
	InsertRaw(ctx context.Context, u authd.User) error
}

// userT0 is a fixed instant with nanoseconds, which the stores keep to the
// microsecond (PostgreSQL's precision).
var userT0 = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)

// UserStore runs the authd.UserStore contract. open returns an empty,
// migrated store and cleans it up when its t ends; it is called once per
// subtest, from parallel subtests. The case-variant cases need the store to
// implement RawInserter, and skip otherwise (failing under
// AUTHD_TEST_REQUIRE_ALL=1).
func UserStore(t *testing.T, open func(t *testing.T) authd.UserStore) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, s authd.UserStore)
	}{
		{"UpsertCreatesThenReuses", testUsersUpsertCreatesThenReuses},
		{"DistinctAddresses", testUsersDistinctAddresses},
		{"FindByEmailUnknown", testUsersFindByEmailUnknown},
		{"StoresLowercase", testUsersStoresLowercase},
		{"TimesAreUTC", testUsersTimesAreUTC},
		{"ConcurrentFirstUpsert", testUsersConcurrentFirstUpsert},
		{"Ping", testUsersPing},
		{"CaseVariantsOldestWins", testUsersCaseVariantsOldestWins},
		{"CaseVariantsConcurrentUpsert", testUsersCaseVariantsConcurrentUpsert},
		{"CaseVariantOnly", testUsersCaseVariantOnly},
		{"CaseDuplicatesGroups", testUsersCaseDuplicatesGroups},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

func testUsersUpsertCreatesThenReuses(t *testing.T, s authd.UserStore) {
	ctx := t.Context()
	const email = "ana@example.com"
	first := mustUpsertUser(t, s, email, userT0)
	if _, err := uuid.Parse(first.ID); err != nil {
		t.Fatalf("ID %q is not a UUID: %v", first.ID, err)
	}
	checkUser(t, "first upsert", first, authd.User{ID: first.ID, Email: email, CreatedAt: userT0, LastVerifiedAt: userT0})

	t1 := userT0.Add(90 * time.Minute)
	second := mustUpsertUser(t, s, email, t1)
	checkUser(t, "second upsert", second, authd.User{ID: first.ID, Email: email, CreatedAt: userT0, LastVerifiedAt: t1})

	found, err := s.FindByEmail(ctx, email)
	if err != nil {
		t.Fatalf("FindByEmail: %v", err)
	}
	checkUser(t, "FindByEmail", found, second)
}

func testUsersDistinctAddresses(t *testing.T, s authd.UserStore) {
	a := mustUpsertUser(t, s, "a@example.com", userT0)
	b := mustUpsertUser(t, s, "b@example.com", userT0)
	if a.ID == b.ID {
		t.Fatalf("two addresses share the id %s", a.ID)
	}
	groups, err := s.CaseDuplicates(t.Context())
	if err != nil {
		t.Fatalf("CaseDuplicates: %v", err)
	}
	if len(groups) != 0 {
		t.Fatalf("CaseDuplicates = %v, want none", groups)
	}
}

func testUsersFindByEmailUnknown(t *testing.T, s authd.UserStore) {
	mustUpsertUser(t, s, "known@example.com", userT0)
	_, err := s.FindByEmail(t.Context(), "unknown@example.com")
	if code := authd.ErrorCode(err); code != authd.ENOTFOUND {
		t.Fatalf("FindByEmail(unknown) error = %v (code %q), want ENOTFOUND", err, code)
	}
}

func testUsersStoresLowercase(t *testing.T, s authd.UserStore) {
	ctx := t.Context()
	tests := []struct{ in, want string }{
		// The normalised forms callers pass are stored as they are.
		{"bob@example.com", "bob@example.com"},
		{"zoë@exämple.com", "zoë@exämple.com"},
		// A caller that skipped NormalizeEmail still gets a lowercase row,
		// which the case-insensitive lookups can find.
		{"Carol.Smith@Example.COM", "carol.smith@example.com"},
	}
	for _, tt := range tests {
		u := mustUpsertUser(t, s, tt.in, userT0)
		if u.Email != tt.want {
			t.Errorf("UpsertVerified(%q).Email = %q, want %q", tt.in, u.Email, tt.want)
		}
		found, err := s.FindByEmail(ctx, tt.want)
		if err != nil {
			t.Fatalf("FindByEmail(%q): %v", tt.want, err)
		}
		if found.ID != u.ID || found.Email != tt.want {
			t.Errorf("FindByEmail(%q) = %+v, want id %s email %q", tt.want, found, u.ID, tt.want)
		}
	}
}

func testUsersTimesAreUTC(t *testing.T, s authd.UserStore) {
	// The columns are naive UTC: an instant in another zone must be stored
	// as its UTC wall clock and come back as the same instant, in UTC.
	at := userT0.In(time.FixedZone("UTC+5", 5*3600))
	u := mustUpsertUser(t, s, "zone@example.com", at)
	checkUser(t, "upsert", u, authd.User{ID: u.ID, Email: "zone@example.com", CreatedAt: userT0, LastVerifiedAt: userT0})
	found, err := s.FindByEmail(t.Context(), "zone@example.com")
	if err != nil {
		t.Fatalf("FindByEmail: %v", err)
	}
	checkUser(t, "FindByEmail", found, u)
}

func testUsersConcurrentFirstUpsert(t *testing.T, s authd.UserStore) {
	// The original answered 500 when two first verifications of one address
	// raced into its unique index.
	const n = 50
	users := upsertUserConcurrently(t, s, "race@example.com", n)
	for i, u := range users {
		if u.ID != users[0].ID {
			t.Fatalf("call %d returned id %s, call 0 returned %s", i, u.ID, users[0].ID)
		}
	}
	found, err := s.FindByEmail(t.Context(), "race@example.com")
	if err != nil {
		t.Fatalf("FindByEmail: %v", err)
	}
	if found.ID != users[0].ID {
		t.Fatalf("FindByEmail id = %s, want %s", found.ID, users[0].ID)
	}
	groups, err := s.CaseDuplicates(t.Context())
	if err != nil {
		t.Fatalf("CaseDuplicates: %v", err)
	}
	if len(groups) != 0 {
		t.Fatalf("CaseDuplicates = %v, want none", groups)
	}
}

func testUsersPing(t *testing.T, s authd.UserStore) {
	if err := s.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

// caseVariantRows are rows as the original service left them: one address
// in three spellings, the newest one the lowercase form callers now pass,
// and two rows made in the same microsecond, which the id orders.
func caseVariantRows() []authd.User {
	return []authd.User{
		{ID: "5a000000-0000-4000-8000-000000000002", Email: "case@example.com", CreatedAt: userT0.Add(-24 * time.Hour), LastVerifiedAt: userT0.Add(-24 * time.Hour)},
		{ID: "5a000000-0000-4000-8000-000000000003", Email: "CASE@example.com", CreatedAt: userT0.Add(-24 * time.Hour)},
		{ID: "5a000000-0000-4000-8000-000000000001", Email: "Case@Example.COM", CreatedAt: userT0.Add(-48 * time.Hour), LastVerifiedAt: userT0.Add(-47 * time.Hour)},
	}
}

// caseVariantsOldestFirst is caseVariantRows in the contract's order:
// created_at, then id.
func caseVariantsOldestFirst() []authd.User {
	r := caseVariantRows()
	return []authd.User{r[2], r[0], r[1]}
}

func testUsersCaseVariantsOldestWins(t *testing.T, s authd.UserStore) {
	ctx := t.Context()
	insertRawUsers(t, s, caseVariantRows()...)
	want := caseVariantsOldestFirst()

	found, err := s.FindByEmail(ctx, "case@example.com")
	if err != nil {
		t.Fatalf("FindByEmail: %v", err)
	}
	checkUser(t, "FindByEmail", found, want[0])

	at := userT0.Add(time.Hour)
	u := mustUpsertUser(t, s, "case@example.com", at)
	// The row's own spelling comes back: the row is the user, not the
	// address asked about.
	oldest := want[0]
	oldest.LastVerifiedAt = at
	checkUser(t, "UpsertVerified", u, oldest)

	// Every row is left in place, the others untouched.
	want[0] = oldest
	groups, err := s.CaseDuplicates(ctx)
	if err != nil {
		t.Fatalf("CaseDuplicates: %v", err)
	}
	checkUserGroups(t, groups, [][]authd.User{want})
}

func testUsersCaseVariantsConcurrentUpsert(t *testing.T, s authd.UserStore) {
	insertRawUsers(t, s, caseVariantRows()...)
	for i, u := range upsertUserConcurrently(t, s, "case@example.com", 20) {
		if u.ID != caseVariantsOldestFirst()[0].ID {
			t.Fatalf("call %d returned id %s, want the oldest row's %s", i, u.ID, caseVariantsOldestFirst()[0].ID)
		}
	}
	groups, err := s.CaseDuplicates(t.Context())
	if err != nil {
		t.Fatalf("CaseDuplicates: %v", err)
	}
	if len(groups) != 1 || len(groups[0]) != 3 {
		t.Fatalf("CaseDuplicates = %v, want the one group of 3 rows", groups)
	}
}

func testUsersCaseVariantOnly(t *testing.T, s authd.UserStore) {
	// A lone mixed-case row is the user of its lowercase address: no second
	// row is made beside it.
	ctx := t.Context()
	row := authd.User{ID: "5b000000-0000-4000-8000-000000000001", Email: "Only@Example.com", CreatedAt: userT0.Add(-time.Hour)}
	insertRawUsers(t, s, row)
	u := mustUpsertUser(t, s, "only@example.com", userT0)
	row.LastVerifiedAt = userT0
	checkUser(t, "UpsertVerified", u, row)
	groups, err := s.CaseDuplicates(ctx)
	if err != nil {
		t.Fatalf("CaseDuplicates: %v", err)
	}
	if len(groups) != 0 {
		t.Fatalf("CaseDuplicates = %v, want none", groups)
	}
}

func testUsersCaseDuplicatesGroups(t *testing.T, s authd.UserStore) {
	insertRawUsers(t, s, caseVariantRows()...)
	other := []authd.User{
		{ID: "5c000000-0000-4000-8000-000000000001", Email: "dup@example.org", CreatedAt: userT0.Add(-time.Minute)},
		{ID: "5c000000-0000-4000-8000-000000000002", Email: "Dup@Example.org", CreatedAt: userT0.Add(-2 * time.Minute), LastVerifiedAt: userT0},
	}
	insertRawUsers(t, s, other...)
	mustUpsertUser(t, s, "single@example.com", userT0)

	groups, err := s.CaseDuplicates(t.Context())
	if err != nil {
		t.Fatalf("CaseDuplicates: %v", err)
	}
	// Groups come in the order of their lowercased address.
	checkUserGroups(t, groups, [][]authd.User{caseVariantsOldestFirst(), {other[1], other[0]}})
}

func mustUpsertUser(t *testing.T, s authd.UserStore, email string, at time.Time) authd.User {
	t.Helper()
	u, err := s.UpsertVerified(t.Context(), email, at)
	if err != nil {
		t.Fatalf("UpsertVerified(%q): %v", email, err)
	}
	return u
}

// upsertUserConcurrently makes n first verifications of email at once and
// returns their users; any error fails t.
func upsertUserConcurrently(t *testing.T, s authd.UserStore, email string, n int) []authd.User {
	t.Helper()
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		users = make([]authd.User, n)
		errs  = make([]error, n)
	)
	// Warm the store's connections first, so that the calls below race
	// each other rather than queue behind connection set-up.
	for range n {
		wg.Go(func() { s.Ping(t.Context()) })
	}
	wg.Wait()
	for i := range n {
		wg.Go(func() {
			<-start
			users[i], errs[i] = s.UpsertVerified(t.Context(), email, userT0.Add(time.Duration(i)*time.Microsecond))
		})
	}
	close(start)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("concurrent UpsertVerified: %v", err)
	}
	return users
}

func insertRawUsers(t *testing.T, s authd.UserStore, users ...authd.User) {
	t.Helper()
	raw, ok := s.(RawInserter)
	if !ok {
		testenv.Skip(t, "the store does not implement storetest.RawInserter: skipping the case-variant cases")
	}
	for _, u := range users {
		if err := raw.InsertRaw(t.Context(), u); err != nil {
			t.Fatalf("InsertRaw(%s): %v", u.Email, err)
		}
	}
}

// checkUser compares users, times to the microsecond stores keep.
func checkUser(t *testing.T, what string, got, want authd.User) {
	t.Helper()
	if !sameUser(got, want) {
		t.Errorf("%s = %s, want %s", what, formatUser(got), formatUser(want))
	}
	for _, ts := range []time.Time{got.CreatedAt, got.LastVerifiedAt} {
		if !ts.IsZero() && ts.Location() != time.UTC {
			t.Errorf("%s: time %v is not in UTC", what, ts)
		}
	}
}

func checkUserGroups(t *testing.T, got, want [][]authd.User) {
	t.Helper()
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		same = len(got[i]) == len(want[i])
		for j := 0; same && j < len(got[i]); j++ {
			same = sameUser(got[i][j], want[i][j])
		}
	}
	if !same {
		t.Errorf("CaseDuplicates = %s, want %s", formatUserGroups(got), formatUserGroups(want))
	}
}

func sameUser(a, b authd.User) bool {
	return a.ID == b.ID && a.Email == b.Email &&
		a.CreatedAt.Equal(b.CreatedAt.Truncate(time.Microsecond)) &&
		a.LastVerifiedAt.Equal(b.LastVerifiedAt.Truncate(time.Microsecond))
}

func formatUser(u authd.User) string {
	return u.ID + " " + u.Email + " created " + u.CreatedAt.Format(time.RFC3339Nano) +
		" verified " + u.LastVerifiedAt.Format(time.RFC3339Nano)
}

func formatUserGroups(groups [][]authd.User) string {
	s := "["
	for _, g := range groups {
		s += "\n  ["
		for _, u := range g {
			s += "\n    " + formatUser(u)
		}
		s += "]"
	}
	return s + "]"
}
