package main

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseArgsTakesTheURLBeforeOrAfterTheCommand(t *testing.T) {
	const def = "http://127.0.0.1:7070"
	cases := []struct {
		args      []string
		url, cmd  string
		rest      []string
		errSubstr string
	}{
		{args: []string{"demo"}, url: def, cmd: "demo"},
		{args: []string{"-url", "http://a:1", "demo"}, url: "http://a:1", cmd: "demo"},
		{args: []string{"demo", "-url", "http://b:2"}, url: "http://b:2", cmd: "demo"},
		{args: []string{"work", "-url=http://c:3"}, url: "http://c:3", cmd: "work"},
		{args: []string{"enqueue", "-url", "http://d:4", "one", "two"}, url: "http://d:4", cmd: "enqueue", rest: []string{"one", "two"}},
		{args: []string{"-url", "http://e:5", "enqueue", "text"}, url: "http://e:5", cmd: "enqueue", rest: []string{"text"}},
		// Refused clearly, never ignored.
		{args: []string{"enqueue", "text", "-url", "http://f:6"}, errSubstr: "put -url before the texts"},
		{args: []string{"demo", "extra"}, errSubstr: "demo takes no arguments"},
		{args: []string{"demo", "-nope"}, errSubstr: "flag provided but not defined: -nope"},
		{args: []string{"enqueue"}, errSubstr: "at least one TEXT"},
		{args: []string{}, errSubstr: "no command"},
		{args: []string{"fly"}, errSubstr: `unknown command "fly"`},
	}
	for _, c := range cases {
		url, cmd, rest, err := parseArgs(c.args)
		if c.errSubstr != "" {
			if err == nil || !strings.Contains(err.Error(), c.errSubstr) {
				t.Errorf("%q: error %v, want one containing %q", c.args, err, c.errSubstr)
			}
			continue
		}
		if err != nil || url != c.url || cmd != c.cmd || (len(rest) > 0 || len(c.rest) > 0) && !reflect.DeepEqual(rest, c.rest) {
			t.Errorf("%q: got (%q, %q, %q, %v), want (%q, %q, %q)", c.args, url, cmd, rest, err, c.url, c.cmd, c.rest)
		}
	}
}
