package sim

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"path"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Serve accepts SSH connections on ln until Close; it returns nil after
// Close and the listener's error otherwise.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.listeners[ln] = true
	s.mu.Unlock()
	for {
		nc, err := ln.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			delete(s.listeners, ln)
			s.mu.Unlock()
			if closed {
				return nil
			}
			return err
		}
		if !s.track(nc) {
			nc.Close()
			return nil
		}
		go s.serveConn(nc)
	}
}

// track registers a live connection so that Close can drop it; it reports
// false once the server is closed.
func (s *Server) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.netConns[nc] = true
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(nc net.Conn) {
	s.mu.Lock()
	delete(s.netConns, nc)
	s.mu.Unlock()
	s.wg.Done()
}

// checkClientKey accepts the authorized keys only, as sshd with
// PasswordAuthentication no does.
func (s *Server) checkClientKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	for _, k := range s.cfg.AuthorizedKeys {
		if bytes.Equal(k.Marshal(), key.Marshal()) {
			return &ssh.Permissions{}, nil
		}
	}
	return nil, errors.New("unknown public key for " + meta.User())
}

func (s *Server) serveConn(nc net.Conn) {
	defer s.untrack(nc)
	defer nc.Close()
	sc, chans, reqs, err := ssh.NewServerConn(nc, s.sshConf)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "unknown channel type")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.session(sc, nc, ch, creqs)
		}()
	}
}

// session serves one session channel: env requests, then one exec. Shells,
// terminals and subsystems are refused, as on a host that only runs kopia
// for its callers. The command's context ends when the client closes the
// channel or the connection.
func (s *Server) session(sc *ssh.ServerConn, nc net.Conn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	env := map[string]string{}
	started := false
	for req := range reqs {
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			ok := !started && ssh.Unmarshal(req.Payload, &kv) == nil && s.acceptEnv(kv.Name)
			if ok {
				env[kv.Name] = kv.Value
			}
			req.Reply(ok, nil)
		case "exec":
			var p struct{ Command string }
			if started || ssh.Unmarshal(req.Payload, &p) != nil {
				req.Reply(false, nil)
				continue
			}
			started = true
			req.Reply(true, nil)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.exec(ctx, sc, nc, ch, p.Command, maps.Clone(env))
			}()
		default:
			req.Reply(false, nil)
		}
	}
}

// acceptEnv matches name against AcceptEnv, where a trailing * matches any
// rest.
func (s *Server) acceptEnv(name string) bool {
	for _, p := range s.cfg.AcceptEnv {
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(name, prefix) || p == name {
			return true
		}
	}
	return false
}

// exec runs one command line the way sshd hands it to the login shell,
// applies the call's fault and answers on the channel.
func (s *Server) exec(ctx context.Context, sc *ssh.ServerConn, nc net.Conn, ch ssh.Channel, line string, env map[string]string) {
	e := &execution{s: s, ctx: ctx, user: sc.User(), env: env, color: true}
	op, target, status, code := s.prepare(e, line)
	idx := s.Record("exec", maskSecrets(line), op, target)
	if op != "" {
		f := s.Next(op, target)
		if !s.Wait(ctx, f) {
			s.Finish(idx, 0)
			ch.Close()
			return
		}
		switch {
		case f.Status >= 400:
			msg := f.Message
			if msg == "" {
				msg = http.StatusText(f.Status)
			}
			e.errorf("%s", msg)
			status, code = f.Status, 1
		default:
			e.taskError = f.TaskError
			code = e.inv.cmd.run(e)
			status = statusOf(code)
			if e.gone {
				s.Finish(idx, 0)
				ch.Close()
				return
			}
		}
		if f.Drop && f.Status < 400 {
			// The command ran; the client never learns how it ended.
			out := e.stdout.Bytes()
			ch.Write(out[:len(out)/2])
			s.Finish(idx, status)
			nc.Close()
			return
		}
	}
	// Logged first, so that the call log is complete once the client
	// has its answer.
	s.Finish(idx, status)
	ch.Write(e.stdout.Bytes())
	ch.Stderr().Write(e.stderr.Bytes())
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
	ch.Close()
}

func statusOf(code int) int {
	if code == 0 {
		return http.StatusOK
	}
	return http.StatusInternalServerError
}

// prepare splits the command line as the login shell would and parses the
// kopia command. It returns the call's op and target, or the status and
// exit code of a line that never reaches a kopia command (op "").
func (s *Server) prepare(e *execution, line string) (op, target string, status, code int) {
	words, err := shellWords(line)
	if err != nil {
		e.stderr.WriteString("bash: -c: line 1: " + err.Error() + "\n")
		return "", "", http.StatusBadRequest, 2
	}
	for len(words) > 0 {
		name, value, ok := strings.Cut(words[0], "=")
		if !ok || !isEnvName(name) {
			break
		}
		e.env[name] = value
		words = words[1:]
	}
	if len(words) == 0 {
		return "", "", http.StatusOK, 0
	}
	if words[0] != "kopia" && path.Base(words[0]) != "kopia" || strings.HasSuffix(words[0], "/") {
		e.stderr.WriteString("bash: line 1: " + words[0] + ": command not found\n")
		return "", "", http.StatusNotFound, 127
	}
	inv, err := parse(words[1:], e.env)
	if err != nil {
		// kingpin.MustParse: the app's name, the error, a hint; exit 1.
		e.stderr.WriteString("kopia: error: " + err.Error() + ", try --help\n")
		return "", "", http.StatusBadRequest, 1
	}
	e.inv = inv
	e.configure()
	return inv.cmd.op, inv.target(), 0, 0
}

func isEnvName(s string) bool {
	for i, r := range s {
		if r != '_' && (r < 'A' || r > 'Z') && (r < 'a' || r > 'z') && (i == 0 || r < '0' || r > '9') {
			return false
		}
	}
	return s != ""
}

// shellWords splits a command line into words with the shell's quoting:
// '...', "..." with \ escapes, and \ outside quotes. Pipes, redirections,
// substitutions and command lists are refused: the simulator runs one
// kopia command, not a shell.
func shellWords(line string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // inside a word
		quote rune
		esc   bool
	)
	for _, r := range line {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				esc = true
			case '$', '`':
				return nil, errors.New("substitutions are not supported by the simulator")
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			esc, in = true, true
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case strings.ContainsRune(";|&<>`$(){}", r):
			return nil, errors.New("syntax error near unexpected token `" + string(r) + "' (the simulator runs single commands)")
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if quote != 0 || esc {
		return nil, errors.New("unexpected EOF while looking for matching quote")
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// secretFlags are the flags whose values the call log masks.
var secretFlags = []string{"--password", "-p", "--user-password", "--server-control-password", "--server-password", "KOPIA_PASSWORD", "KOPIA_SERVER_PASSWORD", "KOPIA_SERVER_CONTROL_PASSWORD"}

// maskSecrets hides passwords in a command line for the call log.
func maskSecrets(line string) string {
	words := strings.Fields(line)
	for i, w := range words {
		if strings.HasPrefix(w, "-p") && len(w) > 2 && w[2] != '=' && !strings.HasPrefix(w, "--") {
			words[i] = "-p***"
			continue
		}
		for _, f := range secretFlags {
			switch {
			case strings.HasPrefix(w, f+"="):
				words[i] = f + "=***"
			case w == f && i+1 < len(words):
				words[i+1] = "***"
			}
		}
	}
	return strings.Join(words, " ")
}
