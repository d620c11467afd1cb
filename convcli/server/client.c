/* The convcli command's native client (Linux; built by setup.py where a C compiler is found).

   It does what convcli/server/client.py does for a call a warm worker can take, without an
   interpreter start (~10 ms, as long as SoX's whole job): it reads which worker serves this
   installation from the entry file that worker wrote (entry-ID.key in the private runtime
   folder, ID hashing the folder of this program and the variables a worker shares with its
   callers), passes stdin, stdout, stderr and the working
   folder (SCM_RIGHTS) with argv, the environment, umask, resource limits, priority and CPU
   affinity as one JSON message, forwards SIGINT/SIGTERM/SIGHUP, and exits with the command's
   status. The worker checks that this environment's installation key is its own before it runs
   anything, as the Python client does before it connects.

   In every other case (no worker, a refusal, anything unexpected before the worker accepted)
   nothing has run, and it executes the Python client beside it, convcli-python, which runs the
   command in-process and starts a worker for the next call. The protocol's other side and its
   rules live in convcli/server_protocol.py. */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <langinfo.h>
#include <limits.h>
#include <locale.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/un.h>
#include <unistd.h>

/* COMMAND, PYTHON_CLIENT, the identity variables, the off-words, where sockets and entries live:
   generated from server_protocol.py by setup.py (convcli/server/native_rules.py), never written here */
#include "client_rules.h"

extern char **environ;


static char **call_argv;
static sigset_t caller_mask;  /* the signal mask to give back: SIGINT/TERM/HUP wait until then */
static char here[PATH_MAX];  /* the folder of this program */
static int connection = -1;
static int closed_stdio[3];  /* which of stdin, stdout, stderr the caller left closed */
static int closed_count;

/* ------------------------------------------------------------------ leaving */

static void say(const char *text) {
    /* one line on stderr, as the Python client writes it */
    char line[4096];
    int n = snprintf(line, sizeof line, COMMAND ": %s\n", text);
    if (n > 0) {
        ssize_t ignored = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)ignored;
    }
}

static void run_python_client(void) {
    /* Nothing has run: the Python client takes the call from the start. */
    char path[PATH_MAX];
    if (connection >= 0) close(connection);
    if (snprintf(path, sizeof path, "%s/%s", here, PYTHON_CLIENT) >= (int)sizeof path) {
        say("error: the install folder's path is too long");
        _exit(1);
    }
    call_argv[0] = path;
    for (int i = 0; i < closed_count; i++) close(closed_stdio[i]);  /* as the caller left them */
    sigprocmask(SIG_SETMASK, &caller_mask, NULL);  /* a Ctrl-C that came meanwhile acts now */
    execv(path, call_argv);
    char text[PATH_MAX + 64];
    snprintf(text, sizeof text, "error: cannot run %s: %s", path, strerror(errno));
    say(text);
    _exit(1);
}

/* ------------------------------------------------------------------ a growing buffer */

typedef struct {
    char *data;
    size_t len, cap;
} buffer;

static void grow(buffer *b, size_t more) {
    if (b->len + more <= b->cap) return;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more) cap *= 2;
    char *data = realloc(b->data, cap);
    if (!data) run_python_client();
    b->data = data;
    b->cap = cap;
}

static void put(buffer *b, const char *text, size_t n) {
    grow(b, n);
    memcpy(b->data + b->len, text, n);
    b->len += n;
}

static void puts_(buffer *b, const char *text) { put(b, text, strlen(text)); }

static void put_int(buffer *b, long long value) {
    char text[32];
    snprintf(text, sizeof text, "%lld", value);
    puts_(b, text);
}

/* Bytes as a JSON string with the value Python's os.fsdecode gives them (UTF-8, each byte of an
   ill-formed sequence as the lone surrogate U+DC80..U+DCFF: 'surrogateescape'). */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t length;
    unsigned char low = 0x80, high = 0xBF;  /* the second byte's range (Unicode table 3-7) */
    if (c >= 0xC2 && c <= 0xDF) length = 2;
    else if (c == 0xE0) { length = 3; low = 0xA0; }
    else if (c >= 0xE1 && c <= 0xEC) length = 3;
    else if (c == 0xED) { length = 3; high = 0x9F; }
    else if (c >= 0xEE && c <= 0xEF) length = 3;
    else if (c == 0xF0) { length = 4; low = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) length = 4;
    else if (c == 0xF4) { length = 4; high = 0x8F; }
    else return 0;
    if (n < length || s[1] < low || s[1] > high) return 0;
    for (size_t i = 2; i < length; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return length;
}

static void put_string(buffer *b, const char *text, size_t n) {
    const unsigned char *s = (const unsigned char *)text;
    char escape[16];
    puts_(b, "\"");
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        size_t length = utf8_sequence(s + i, n - i);
        if (length == 0) {
            snprintf(escape, sizeof escape, "\\udc%02x", c);
            puts_(b, escape);
            i += 1;
        } else if (length > 1) {
            put(b, text + i, length);
            i += length;
        } else {
            if (c == '"' || c == '\\') {
                escape[0] = '\\';
                escape[1] = (char)c;
                put(b, escape, 2);
            } else if (c < 0x20) {
                snprintf(escape, sizeof escape, "\\u%04x", c);
                puts_(b, escape);
            } else {
                put(b, text + i, 1);
            }
            i += 1;
        }
    }
    puts_(b, "\"");
}

/* ------------------------------------------------------------------ the request */

static char **variables;  /* the environment as os.environ has it: NAME=VALUE, first of each name */

static void read_environment(void) {
    /* after the locale's coercion, which adds to the environment */
    size_t count = 0, n = 0;
    for (char **entry = environ; *entry; entry++) count++;
    variables = malloc((count + 1) * sizeof *variables);
    if (!variables) run_python_client();
    for (char **entry = environ; *entry; entry++) {
        const char *equals = strchr(*entry, '=');
        if (!equals) continue;
        size_t name_length = (size_t)(equals - *entry) + 1;  /* with the '=' */
        int seen = 0;  /* os.environ keeps the first of two entries with one name */
        for (size_t i = 0; i < n && !seen; i++) seen = strncmp(variables[i], *entry, name_length) == 0;
        if (!seen) variables[n++] = *entry;
    }
    variables[n] = NULL;
}

static void put_environment(buffer *b) {
    puts_(b, "{");
    for (char **entry = variables; *entry; entry++) {
        const char *equals = strchr(*entry, '=');
        if (entry != variables) puts_(b, ",");
        put_string(b, *entry, (size_t)(equals - *entry));
        puts_(b, ":");
        put_string(b, equals + 1, strlen(equals + 1));
    }
    puts_(b, "}");
}

static void coerce_legacy_locale(void) {
    /* PEP 538, as the Python client's interpreter does when it starts: in the C locale (LC_ALL
       unset), LC_CTYPE=C.UTF-8 (or the first of its spellings the system has) joins the
       environment, so the request carries the environment a Python client would send. */
    const char *coerce = getenv("PYTHONCOERCECLOCALE");
    const char *all = getenv("LC_ALL");
    if ((coerce && strcmp(coerce, "0") == 0) || (all && *all)) return;
    if (coerce && strcmp(coerce, "warn") == 0) run_python_client();  /* it says so on stderr */
    const char *current = setlocale(LC_CTYPE, "");
    if (!current || strcmp(current, "C") != 0) return;
    static const char *targets[] = {"C.UTF-8", "C.utf8", "UTF-8"};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) {
        if (!setlocale(LC_CTYPE, targets[i])) continue;
        const char *codeset = nl_langinfo(CODESET);
        if (codeset && *codeset) {
            setenv("LC_CTYPE", targets[i], 1);
            return;
        }
        setlocale(LC_CTYPE, "");
    }
}

static void put_limits(buffer *b) {
    /* protocol.RLIMITS; RLIM_INFINITY travels as -1, as Python's resource module gives it */
    int first = 1;
    puts_(b, "{");
    for (size_t i = 0; i < sizeof RLIMITS / sizeof RLIMITS[0]; i++) {
        struct rlimit limit;
        if (getrlimit(RLIMITS[i].id, &limit) != 0) continue;
        if (!first) puts_(b, ",");
        first = 0;
        put_string(b, RLIMITS[i].name, strlen(RLIMITS[i].name));
        puts_(b, ":[");
        put_int(b, (long long)limit.rlim_cur);
        puts_(b, ",");
        put_int(b, (long long)limit.rlim_max);
        puts_(b, "]");
    }
    puts_(b, "}");
}

static void put_request(buffer *b, int argc, char **argv) {
    puts_(b, "{\"op\":\"run\",\"check_installation\":true,\"argv\":[");
    for (int i = 1; i < argc; i++) {
        if (i > 1) puts_(b, ",");
        put_string(b, argv[i], strlen(argv[i]));
    }
    puts_(b, "],\"env\":");
    put_environment(b);
    mode_t mask = umask(022);
    umask(mask);
    puts_(b, ",\"umask\":");
    put_int(b, (long long)mask);
    puts_(b, ",\"rlimits\":");
    put_limits(b);
    errno = 0;
    int nice = getpriority(PRIO_PROCESS, 0);
    puts_(b, ",\"nice\":");
    put_int(b, errno ? 0 : nice);
    puts_(b, ",\"affinity\":[");
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0) {
        int first = 1;
        for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
            if (!CPU_ISSET(cpu, &cpus)) continue;
            if (!first) puts_(b, ",");
            first = 0;
            put_int(b, cpu);
        }
    }
    puts_(b, "],\"pid\":");
    put_int(b, (long long)getpid());
    puts_(b, ",\"closed\":[");
    for (int i = 0; i < closed_count; i++) {
        if (i) puts_(b, ",");
        put_int(b, closed_stdio[i]);
    }
    puts_(b, "]}");
}

/* ------------------------------------------------------------------ where the worker is */

static int private_folder(const char *path, uid_t uid) {
    struct stat info;
    return lstat(path, &info) == 0 && S_ISDIR(info.st_mode) && info.st_uid == uid && !(info.st_mode & 077);
}

static void runtime_folder(char *folder, size_t size) {
    /* protocol.runtime_dir(create=False) */
    uid_t uid = getuid();
    const char *base = getenv("XDG_RUNTIME_DIR");
    int n;
    if (base && base[0] == '/' && private_folder(base, uid))
        n = snprintf(folder, size, "%s%s%s", base, base[strlen(base) - 1] == '/' ? "" : "/", RUNTIME_NAME);
    else
        n = snprintf(folder, size, "%s%u", FALLBACK_RUNTIME_PREFIX, (unsigned)uid);
    if (n >= (int)size || !private_folder(folder, uid)) run_python_client();
}

static int has_prefix(const char *entry, size_t name_length, const char *prefix) {
    return name_length >= strlen(prefix) && strncmp(entry, prefix, strlen(prefix)) == 0;
}

/* protocol.identity_environment: the variables read once at import, which a worker shares with
   its callers (a test checks that both sides pick the same ones) */
static int is_name(const char *entry, size_t name_length, const char *name) {
    return name_length == strlen(name) && has_prefix(entry, name_length, name);
}

static int identity_variable(const char *entry, size_t name_length) {
    for (const char *const *name = READ_PER_CALL; *name; name++)
        if (is_name(entry, name_length, *name)) return 0;
    for (const char *const *prefix = READ_PER_CALL_PREFIXES; *prefix; prefix++)
        if (has_prefix(entry, name_length, *prefix)) return 0;
    for (const char *const *name = IDENTITY_NAMES; *name; name++)
        if (is_name(entry, name_length, *name)) return 1;
    for (const char *const *prefix = IDENTITY_PREFIXES; *prefix; prefix++)
        if (has_prefix(entry, name_length, *prefix)) return 1;
    return 0;
}

static int by_name(const void *a, const void *b) {
    /* environment entries in the order of their names' bytes ('=' ends a name: it sorts first) */
    const unsigned char *x = *(const unsigned char *const *)a, *y = *(const unsigned char *const *)b;
    for (;; x++, y++) {
        unsigned char cx = *x == '=' ? 0 : *x, cy = *y == '=' ? 0 : *y;
        if (cx != cy || cx == 0) return (int)cx - (int)cy;
    }
}

static uint64_t fnv1a(uint64_t hash, const char *data, size_t n) {
    /* protocol.fnv1a: FNV-1a, 64 bits */
    for (size_t i = 0; i < n; i++) {
        hash ^= (unsigned char)data[i];
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

static uint64_t entry_hash(void) {
    /* protocol.entry_path: this program's folder, then the identity variables sorted by name */
    uint64_t hash = fnv1a(0xcbf29ce484222325ULL, here, strlen(here) + 1);
    size_t count = 0, n = 0;
    while (variables[count]) count++;
    const char **chosen = malloc((count + 1) * sizeof *chosen);
    if (!chosen) run_python_client();
    for (char **entry = variables; *entry; entry++)
        if (identity_variable(*entry, (size_t)(strchr(*entry, '=') - *entry))) chosen[n++] = *entry;
    qsort(chosen, n, sizeof *chosen, by_name);
    for (size_t i = 0; i < n; i++) hash = fnv1a(hash, chosen[i], strlen(chosen[i]) + 1);
    free(chosen);
    return hash;
}

static void worker_socket(const char *folder, char *path, size_t size) {
    /* entry-ID.key names the key of the worker serving this folder's convcli for this identity */
    char entry[PATH_MAX];
    if (snprintf(entry, sizeof entry, "%s/%s%016llx%s", folder, ENTRY_PREFIX, (unsigned long long)entry_hash(),
                 ENTRY_SUFFIX) >= (int)sizeof entry)
        run_python_client();
    int fd = open(entry, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) run_python_client();
    struct stat info;
    char key[65];
    ssize_t n = -1;
    if (fstat(fd, &info) == 0 && S_ISREG(info.st_mode) && info.st_uid == getuid() && !(info.st_mode & 022))
        n = read(fd, key, sizeof key - 1);
    close(fd);
    if (n <= 0) run_python_client();
    key[n] = 0;
    for (ssize_t i = 0; i < n; i++)
        if (!((key[i] >= '0' && key[i] <= '9') || (key[i] >= 'a' && key[i] <= 'f'))) run_python_client();
    if (snprintf(path, size, "%s/%s%s%s", folder, WORKER_PREFIX, key, SOCKET_SUFFIX) >= (int)size)
        run_python_client();
    /* protocol.socket_is_ours */
    if (lstat(path, &info) != 0 || !S_ISSOCK(info.st_mode) || info.st_uid != getuid() || (info.st_mode & 022))
        run_python_client();
}

/* ------------------------------------------------------------------ messages */

static void set_timeout(int option, int seconds) {
    struct timeval timeout = {seconds, 0};
    setsockopt(connection, SOL_SOCKET, option, &timeout, sizeof timeout);
}

static int send_all(const char *data, size_t n) {
    while (n > 0) {
        ssize_t sent = send(connection, data, n, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        data += sent;
        n -= (size_t)sent;
    }
    return 0;
}

static int send_request(buffer *body, int cwd) {
    unsigned char head[4] = {(unsigned char)(body->len >> 24), (unsigned char)(body->len >> 16),
                             (unsigned char)(body->len >> 8), (unsigned char)body->len};
    int fds[4] = {0, 1, 2, cwd};
    char control[CMSG_SPACE(sizeof fds)];
    memset(control, 0, sizeof control);
    struct iovec parts[2] = {{head, 4}, {body->data, body->len}};
    struct msghdr message = {0};
    message.msg_iov = parts;
    message.msg_iovlen = 2;
    message.msg_control = control;
    message.msg_controllen = sizeof control;
    struct cmsghdr *rights = CMSG_FIRSTHDR(&message);
    rights->cmsg_level = SOL_SOCKET;
    rights->cmsg_type = SCM_RIGHTS;
    rights->cmsg_len = CMSG_LEN(sizeof fds);
    memcpy(CMSG_DATA(rights), fds, sizeof fds);
    ssize_t sent;
    do sent = sendmsg(connection, &message, MSG_NOSIGNAL);
    while (sent < 0 && errno == EINTR);
    if (sent < 0) return -1;
    size_t done = (size_t)sent;  /* the descriptors went with the first byte */
    if (done < 4) {
        if (send_all((const char *)head + done, 4 - done) < 0) return -1;
        done = 4;
    }
    return send_all(body->data + (done - 4), body->len - (done - 4));
}

static int receive_exactly(char *data, size_t n) {
    while (n > 0) {
        ssize_t got = recv(connection, data, n, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        data += got;
        n -= (size_t)got;
    }
    return 0;
}

static char *receive_message(void) {
    /* one message's JSON text (NUL-terminated), or NULL at the end of the stream or on an error */
    unsigned char head[4];
    if (receive_exactly((char *)head, 4) < 0) return NULL;
    size_t n = ((size_t)head[0] << 24) | ((size_t)head[1] << 16) | ((size_t)head[2] << 8) | head[3];
    if (n > MAX_REPLY) return NULL;
    char *body = malloc(n + 1);
    if (!body || receive_exactly(body, n) < 0) {
        free(body);
        return NULL;
    }
    body[n] = 0;
    return body;
}

static int number_after(const char *message, const char *name, long long *value) {
    /* the integer value of "name" in a flat JSON object the worker wrote */
    char pattern[64];
    snprintf(pattern, sizeof pattern, "\"%s\":", name);
    const char *at = strstr(message, pattern);
    if (!at) return 0;
    char *end;
    errno = 0;
    *value = strtoll(at + strlen(pattern), &end, 10);
    return errno == 0 && end != at + strlen(pattern);
}

static void put_utf8(buffer *b, unsigned long code) {
    char out[4];
    size_t n;
    if (code < 0x80) { out[0] = (char)code; n = 1; }
    else if (code < 0x800) { out[0] = (char)(0xC0 | code >> 6); out[1] = (char)(0x80 | (code & 0x3F)); n = 2; }
    else if (code < 0x10000) {
        out[0] = (char)(0xE0 | code >> 12); out[1] = (char)(0x80 | ((code >> 6) & 0x3F));
        out[2] = (char)(0x80 | (code & 0x3F)); n = 3;
    } else {
        out[0] = (char)(0xF0 | code >> 18); out[1] = (char)(0x80 | ((code >> 12) & 0x3F));
        out[2] = (char)(0x80 | ((code >> 6) & 0x3F)); out[3] = (char)(0x80 | (code & 0x3F)); n = 4;
    }
    put(b, out, n);
}

static void say_error(const char *message) {
    /* the "error" string of a status message, unescaped (the worker writes ASCII JSON) */
    const char *at = strstr(message, "\"error\":\"");
    if (!at) return;
    buffer text = {0};
    puts_(&text, "error: ");
    for (const char *s = at + 9; *s && *s != '"'; s++) {
        if (*s != '\\') { put(&text, s, 1); continue; }
        s++;
        switch (*s) {
            case 'n': puts_(&text, "\n"); break;
            case 't': puts_(&text, "\t"); break;
            case 'r': puts_(&text, "\r"); break;
            case 'b': puts_(&text, "\b"); break;
            case 'f': puts_(&text, "\f"); break;
            case 'u': {
                if (!s[1] || !s[2] || !s[3] || !s[4]) { s--; break; }
                unsigned long code = strtoul((char[]){s[1], s[2], s[3], s[4], 0}, NULL, 16);
                s += 4;
                if (code >= 0xD800 && code < 0xDC00 && s[1] == '\\' && s[2] == 'u' && s[3] && s[4] && s[5] && s[6]) {
                    unsigned long low = strtoul((char[]){s[3], s[4], s[5], s[6], 0}, NULL, 16);
                    if (low >= 0xDC00 && low < 0xE000) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00);
                        s += 6;
                    }
                }
                put_utf8(&text, code);
                break;
            }
            case 0: s--; break;
            default: put(&text, s, 1);
        }
    }
    puts_(&text, "");
    grow(&text, 1);
    text.data[text.len] = 0;
    say(text.data);
    free(text.data);
}

/* ------------------------------------------------------------------ the call */

static void forward(int signum) {
    /* protocol.FORWARDED_SIGNALS: the child takes the signal as if it were its own */
    char message[32];
    int n = snprintf(message + 4, sizeof message - 4, "{\"signal\":%d}", signum);
    message[0] = message[1] = message[2] = 0;
    message[3] = (char)n;
    int saved = errno;
    ssize_t ignored = send(connection, message, (size_t)n + 4, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)ignored;
    errno = saved;
}

static int follow(void) {
    set_timeout(SO_RCVTIMEO, 0);
    struct sigaction action = {0};
    action.sa_handler = forward;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof FORWARDED_SIGNALS / sizeof FORWARDED_SIGNALS[0]; i++)
        sigaction(FORWARDED_SIGNALS[i], &action, NULL);
    sigprocmask(SIG_SETMASK, &caller_mask, NULL);  /* what came before the handlers goes on now */
    for (;;) {
        char *message = receive_message();
        if (!message) {
            say("error: the warm worker ended without reporting an exit status (was it killed?); "
                ENABLE_VARIABLE "=0 runs commands in-process");
            return 1;
        }
        long long status;
        if (strncmp(message, "{\"status\":", 10) == 0 && number_after(message, "status", &status)) {
            say_error(message);
            free(message);
            return status >= 0 && status <= 255 ? (int)status : 1;
        }
        free(message);
    }
}

static void hold_closed_stdio(void) {
    /* client.py's _hold_closed_stdio: a closed stdin, stdout or stderr is held by /dev/null, so
       that our socket never takes its slot and goes to the command as one of the caller's
       streams; the request names them and the child closes them again. A stream that is a
       directory ('< .') counts as closed: Python cannot start with one (init_sys_streams), so the
       call runs here and in the worker alike, and only reading or writing it is refused */
    struct stat info;
    for (int fd = 0; fd < 3; fd++)
        if ((fcntl(fd, F_GETFD) < 0 && errno == EBADF) || (fstat(fd, &info) == 0 && S_ISDIR(info.st_mode)))
            closed_stdio[closed_count++] = fd;
    for (int i = 0; i < closed_count; i++) {
        int placeholder = open("/dev/null", O_RDWR);
        if (placeholder < 0) run_python_client();
        if (placeholder != closed_stdio[i]) {
            dup2(placeholder, closed_stdio[i]);
            close(placeholder);
        }
    }
}

static int runs_here(int argc, char **argv) {
    /* 'convcli server ...' manages the worker: the Python client runs it */
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') continue;
        for (const char *const *command = IN_PROCESS_COMMANDS; *command; command++)
            if (strcmp(argv[i], *command) == 0) return 1;
        return 0;
    }
    return 0;
}

static int disabled(void) {
    /* ENABLE_VARIABLE set to one of FALSE_WORDS, any case, around blanks (protocol.settings); the
       config file is the worker's to read */
    const char *value = getenv(ENABLE_VARIABLE);
    if (!value) return 0;
    const char *end = value + strlen(value);
    while (value < end && strchr(" \t\n\r\v\f", *value)) value++;
    while (end > value && strchr(" \t\n\r\v\f", end[-1])) end--;
    for (const char *const *word = FALSE_WORDS; *word; word++)
        if ((size_t)(end - value) == strlen(*word) && strncasecmp(value, *word, strlen(*word)) == 0) return 1;
    return 0;
}

int main(int argc, char **argv) {
    call_argv = argv;
    /* Until the child has taken the call, a signal must neither kill this process (the child
       would run on unasked) nor be lost: it waits, and goes to the child or to the Python client. */
    sigset_t forwarded;
    sigemptyset(&forwarded);
    for (size_t i = 0; i < sizeof FORWARDED_SIGNALS / sizeof FORWARDED_SIGNALS[0]; i++)
        sigaddset(&forwarded, FORWARDED_SIGNALS[i]);
    sigprocmask(SIG_BLOCK, &forwarded, &caller_mask);
    signal(SIGPIPE, SIG_IGN);  /* as in Python: a closed stderr is an error to ignore, not death */
    ssize_t n = readlink("/proc/self/exe", here, sizeof here - 1);
    if (n <= 0) {
        say("error: cannot find the convcli install folder (/proc/self/exe)");
        return 1;
    }
    here[n] = 0;
    char *slash = strrchr(here, '/');
    if (!slash) return 1;
    *slash = 0;
    hold_closed_stdio();
    if (disabled() || runs_here(argc, argv)) run_python_client();

    coerce_legacy_locale();  /* the environment a Python client would have, before it is hashed or sent */
    read_environment();
    char folder[PATH_MAX], path[PATH_MAX];
    runtime_folder(folder, sizeof folder);
    worker_socket(folder, path, sizeof path);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof address.sun_path) run_python_client();
    strcpy(address.sun_path, path);
    connection = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connection < 0) run_python_client();
    set_timeout(SO_SNDTIMEO, CONNECT_SECONDS);  /* a Unix socket's connect waits this long at most */
    if (connect(connection, (struct sockaddr *)&address, sizeof address) != 0) run_python_client();
    struct ucred peer;
    socklen_t size = sizeof peer;
    if (getsockopt(connection, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0 || peer.uid != getuid())
        run_python_client();
    set_timeout(SO_SNDTIMEO, ACCEPT_SECONDS);
    set_timeout(SO_RCVTIMEO, ACCEPT_SECONDS);

    buffer request = {0};
    put_request(&request, argc, argv);
    int cwd = open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0) run_python_client();
    int sent = send_request(&request, cwd);
    close(cwd);
    free(request.data);
    if (sent < 0) run_python_client();
    char *reply = receive_message();
    long long pid;
    if (!reply || strncmp(reply, "{\"accepted\":", 12) != 0 || !number_after(reply, "accepted", &pid))
        run_python_client();  /* refused (another installation or environment, turned off): not run */
    free(reply);
    set_timeout(SO_SNDTIMEO, 0);
    return follow();
}
