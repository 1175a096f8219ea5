package httpapi

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/authd/authd"
)

// FuzzDecodeVerify: any body gives either valid fields or a 422 in
// FastAPI's list shape that never repeats what was sent.
func FuzzDecodeVerify(f *testing.F) {
	for _, s := range []string{
		`{"email":"a@example.com","project_id":"shop","code":"123456"}`,
		`{"email":1}`, `[]`, `{`, ``, `null`, `"x"`, `{"email":"a@example.com","project_id":"shop","code":"123456","nonce":"n"}`,
		`{"email":"SECRETVALUE@example.com\r\n","project_id":"SECRETVALUE","code":"SECRETVALUE"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		in, err := decodeVerify(body, true)
		if err == nil {
			if _, e := authd.NormalizeEmail(in.email); e != nil || !authd.ValidProjectID(in.projectID) || !authd.ValidCode(in.code, 6) {
				t.Fatalf("accepted invalid fields %+v", in)
			}
			return
		}
		var ae *apiError
		if !errors.As(err, &ae) || ae.status != 422 {
			t.Fatalf("error %v is not a 422", err)
		}
		list, ok := ae.Detail.([]FieldError)
		if !ok || len(list) == 0 {
			t.Fatalf("422 detail is not a non-empty list: %#v", ae.Detail)
		}
		out, _ := json.Marshal(ae)
		if strings.Contains(string(out), "SECRETVALUE") {
			t.Fatalf("the 422 echoes the submitted value: %s", out)
		}
		for _, fe := range list {
			if len(fe.Loc) == 0 || fe.Loc[0] != "body" || fe.Msg == "" || fe.Type == "" {
				t.Fatalf("field error %+v is not FastAPI's shape", fe)
			}
		}
	})
}

func TestDecodeErrors(t *testing.T) {
	cases := map[string]string{
		``:                                      "missing",
		`{"email":"a@example.com"`:              "json_invalid",
		`[1]`:                                   "model_attributes_type",
		`{"email":null,"project_id":"shop"}`:    "string_type",
		`{"project_id":"shop","code":"123456"}`: "missing",
		`{"email":"a@example.com","project_id":"a b","code":"123456"}`: "string_pattern_mismatch",
		`{"email":"a@example.com","project_id":"ab","code":"12345"}`:   "string_pattern_mismatch",
		`{"email":"nope","project_id":"ab","code":"123456"}`:           "value_error",
	}
	for body, typ := range cases {
		_, err := decodeVerify([]byte(body), false)
		ae, ok := err.(*apiError)
		if !ok {
			t.Fatalf("%s: %v", body, err)
		}
		if list := ae.Detail.([]FieldError); list[0].Type != typ {
			t.Errorf("%s: type %q, want %q", body, list[0].Type, typ)
		}
	}
}

func TestRedactAddresses(t *testing.T) {
	err := errors.New(`ERROR: duplicate key value violates unique constraint (SQLSTATE 23505): Key (email)=(zoë.smith@exämple.com) already exists; also "b@x.io"`)
	got := redactAddresses(err)
	for _, leak := range []string{"zoë.smith", "b@x.io"} {
		if strings.Contains(got, leak) {
			t.Fatalf("redacted text still holds %q: %s", leak, got)
		}
	}
	if !strings.Contains(got, "z***@exämple.com") || !strings.Contains(got, "b***@x.io") {
		t.Fatalf("masked forms missing: %s", got)
	}
}

// A string field reads as json.Unmarshal reads it, whether it takes the
// way without escapes or not: escapes, non-ASCII, invalid UTF-8 (each
// bad byte U+FFFD), and what is not a string.
func TestFieldStringAsUnmarshal(t *testing.T) {
	for _, v := range []string{
		`"ana@example.com"`, `""`, `"zo\u00eb@ex\u00e4mple.com"`, `"a\"b\\c"`, `"line\nbreak"`, `"zoë@exämple.com"`,
		"\"bad \xff\xfe byte\"", "\"cut \xe2\x82\"", `"\ud83d\ude00"`, `"<x>&"`, `null`, `12`, `{"a":1}`, `["x"]`, `true`,
	} {
		f, err := decodeObject([]byte(`{"email":` + v + `}`))
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		got, ok := f.str("email", false)
		var want string
		wantOK := json.Unmarshal([]byte(v), &want) == nil && v != "null"
		if ok != wantOK || got != want {
			t.Errorf("%s: str = %q, %v; want %q, %v", v, got, ok, want, wantOK)
		}
	}
}
