import { code, type Case } from "./case.js";

export const cppCases: Case[] = [
  {
    rule: "cpp/unbounded-copy",
    bad: [
      code`
        #include <cstring>
        void greet(char* out, const char* name) {
          strcat(out, name); // <- unbounded-copy
        }
      `,
      code`
        #include <cstdio>
        void label(const char* who) {
          char line[32];
          sprintf(line, "user=%s", who); // <- unbounded-copy
        }
      `,
      code`
        #include <cstring>
        void f(const char* in) {
          char buf[16];
          strcpy(buf, in); // <- unbounded-copy
        }
      `,
    ],
    good: [
      code`
        #include <cstring>
        void f(const char* in) {
          char buf[16];
          strncpy(buf, in, sizeof(buf) - 1);
          buf[15] = 0;
          snprintf(buf, sizeof(buf), "%s", in); // strcpy(buf, in) in a comment
        }
      `,
      code`
        #include <cstring>
        void copyChecked(char* dest, const char* src, size_t destSize) {
          if (strlen(src) < destSize) {
            strcpy(dest, src);
          }
        }
        char* duplicate(const char* s) {
          char* copy = new char[strlen(s) + 1];
          strcpy(copy, s);
          return copy;
        }
        void fits() {
          char small[8];
          strcpy(small, "abc");
          char num[32];
          sprintf(num, "%d", 42);
        }
      `,
    ],
  },
  {
    rule: "cpp/gets",
    bad: [
      code`
        #include <cstdio>
        int main() {
          char name[32];
          gets(name); // <- gets
        }
      `,
    ],
    good: [
      code`
        #include <cstdio>
        int main() {
          char name[32];
          fgets(name, sizeof(name), stdin);
        }
      `,
      code`
        extern "C" char* gets (char* __s) __attribute__((__deprecated__));
        namespace std { using ::gets; }
      `,
    ],
  },
  {
    rule: "cpp/scanf-unbounded-string",
    bad: [
      code`
        int main() {
          char name[10];
          int age;
          scanf("%d %s", &age, name); // <- scanf-unbounded-string
        }
      `,
    ],
    good: [
      code`
        int main() {
          char name[10];
          int age;
          scanf("%d %9s", &age, name);
          scanf("100%% %d", &age);
        }
      `,
    ],
  },
  {
    rule: "cpp/cin-into-char-array",
    bad: [
      code`
        #include <iostream>
        int main() {
          char buffer[10];
          std::cin >> buffer; // <- cin-into-char-array
        }
      `,
      code`
        #include <iostream>
        void readName(char* dest) {
          std::cin >> dest; // <- cin-into-char-array
        }
      `,
    ],
    good: [
      code`
        #include <iostream>
        #include <string>
        int main() {
          std::string buffer;
          std::cin >> buffer;
        }
      `,
      code`
        #include <iomanip>
        #include <iostream>
        int main() {
          char buffer[10];
          std::cin >> std::setw(10) >> buffer;
        }
      `,
    ],
  },
  {
    rule: "cpp/memcpy-into-fixed-buffer",
    bad: [
      code`
        #include <cstring>
        void f(const char* src, size_t n) {
          char dst[8];
          memcpy(dst, src, n); // <- memcpy-into-fixed-buffer
        }
      `,
    ],
    good: [
      code`
        #include <cstring>
        void f(const char* src, size_t n) {
          char dst[8];
          if (n > sizeof(dst)) return;
          memcpy(dst, src, n);
          memcpy(dst, src, sizeof(dst));
        }
      `,
      code`
        #include <algorithm>
        #include <cstring>
        #include <string>
        enum { max_length = 1024 };
        struct Session {
          char data_[max_length];
          void deliver(const std::string& msg) {
            std::memcpy(data_, msg.c_str(), (std::min)(max_length, (int)msg.size()));
          }
        };
      `,
    ],
  },
  {
    rule: "cpp/out-of-bounds",
    bad: [
      code`
        struct request { int id; };
        int send_all() {
            request reqs[2];
            reqs[0].id = 1;
            reqs[2].id = 2; // <- out-of-bounds
            return reqs[0].id;
        }
      `,
      code`
        #include <iostream>
        int main() {
          int arr[5] = {0};
          int i;
          std::cin >> i;
          arr[i] = 42; // <- out-of-bounds
        }
      `,
      code`
        int main() {
          char buffer[10];
          int i;
          for (i = 0; i <= 15; i++) { // <- out-of-bounds
            buffer[i] = 'A';
          }
        }
      `,
      code`
        #include <cstring>
        void fill(const char* input) {
          char name[8];
          for (int i = 0; i < strlen(input); i++) { // <- out-of-bounds
            name[i] = input[i];
          }
        }
      `,
      code`
        void printAll(int values[], int size) {
          for (int i = 0; i <= size; i++) { // <- out-of-bounds
            values[i] = 0;
          }
        }
      `,
      code`
        const int kSlots = 4;
        int slots[kSlots];
        void reset() {
          slots[kSlots] = 0; // <- out-of-bounds
        }
      `,
      code`
        #include <vector>
        #include <string>
        std::vector<std::string> months() {
          static const char* names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
          return std::vector<std::string>(&names[0], &names[13]); // <- out-of-bounds
        }
      `,
    ],
    good: [
      code`
        #include <cstdint>
        struct request { int id; };
        int send_all(int rank) {
            if (rank == 0) {
                request reqs[2];
                reqs[0].id = 1;
                reqs[1].id = 2;
                return reqs[0].id + reqs[1].id;
            } else {
                request reqs[2];
                reqs[0].id = 3;
                return reqs[0].id;
            }
        }
      `,
      code`
        #include <iostream>
        int main() {
          int arr[5] = {0};
          int i;
          std::cin >> i;
          if (i >= 0 && i < 5) arr[i] = 42;
          for (int k = 0; k < 5; k++) arr[k] = k;
        }
      `,
      code`
        #include <cstring>
        void fill(const char* input, int* values, int size) {
          char name[8];
          if (strlen(input) >= sizeof(name)) return;
          for (int i = 0; i < strlen(input); i++) name[i] = input[i];
          for (int i = 0; i < size; i++) values[i] = 0;
        }
      `,
      code`
        #include <cstdint>
        #include <string>
        #include <vector>
        const int kArraySize = 10;
        const std::size_t count = 10;
        template <typename T>
        struct Vec {
          T* slice() const {
            T* out = new T[count];
            return out;
          }
        };
        struct Machine {
          int* stack;
          Machine() : stack(new int[kArraySize]) {}
        };
        struct Pool { int id; };
        template <typename C>
        struct Cache { static const C* zones[14]; };
        template <>
        const char* Cache<char>::zones[14];
        template <typename C>
        const C* Cache<C>::zones[14];
        void shuffle() {
          uint32_t values[kArraySize];
          static Pool pools[kArraySize];
          char const tag[8] = "1.2.3.4";
          values[0] = tag[0] + pools[0].id;
        }
        double energy(const std::vector<double>& state) {
          double x[1] = {state[0]};
          return x[0] * x[0];
        }
        void step(const double* x, double* dxdt) {
          dxdt[0] = x[1];
          dxdt[1] = -x[0] - 0.1 * x[1];
        }
        int none() {
          char* argv[1] = {nullptr};
          return argv[0] != nullptr;
        }
        int one(int argc, char** argv) {
          if (argc < 2) return 0;
          return argv[1][0];
        }
      `,
      code`
        #include <vector>
        #include <string>
        std::vector<std::string> months() {
          static const char* names[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
          return std::vector<std::string>(&names[0], &names[12]);
        }
      `,
    ],
  },
  {
    rule: "cpp/format-string",
    bad: [
      code`
        #include <cstdarg>
        #include <cstdio>
        void log_line(const char* tag, const char* msg) {
            va_list none;
            vfprintf(stderr, msg, none); // <- format-string
        }
      `,
      code`
        #include <cstdio>
        int main(int argc, char** argv) {
          printf(argv[1]); // <- format-string
        }
      `,
      code`
        #include <cstdio>
        void column(FILE* out, const char* label, int width) {
          char fmt[32];
          snprintf(fmt, sizeof(fmt), "%%%ds %s", width, label);
          fprintf(out, fmt, "x"); // <- format-string
        }
      `,
    ],
    good: [
      code`
        #include <cstdarg>
        #include <cstdio>
        void log_line(const char* fmt, ...) {
            va_list args;
            va_start(args, fmt);
            vfprintf(stderr, fmt, args);
            va_end(args);
            fputc('\n', stderr);
        }
      `,
      code`
        #include <cstdio>
        int main(int argc, char** argv) {
          printf("%s", argv[1]);
          fprintf(stderr, "err %d\n", argc);
        }
      `,
      code`
        #include <cstdio>
        #define REPORT(what)                                     \
          fprintf(                                               \
              stderr,                                            \
              "\n%s: caught an exception escaping the test\n",    \
              what)
        bool child();
        void write_columns(FILE* out, int width, int prec, double v, int n) {
          char ifmt[16], vfmt[20];
          sprintf(ifmt, "%%%dd", width);
          if (prec > 0)
            sprintf(vfmt, "%% %d.%dE", width, prec);
          else
            sprintf(vfmt, "%% %d.%df", width, prec);
          fprintf(out, ifmt, n);
          fprintf(out, vfmt, v);
          fprintf(stderr, child() ? "Inside" : "Outside");
          REPORT("main");
        }
      `,
    ],
  },
  {
    rule: "cpp/command-injection",
    bad: [
      code`
        #include <cstdlib>
        #include <string>
        void run(const std::string& host) {
          std::string cmd = "ping " + host;
          system(cmd.c_str()); // <- command-injection
        }
      `,
      code`
        #include <unistd.h>
        int main(int argc, char* argv[]) {
          if (argc < 2) return 1;
          execv(argv[1], argv + 1); // <- command-injection
          return 1;
        }
      `,
      code`
        #include <string>
        #include <unistd.h>
        void launch(const std::string& tool) {
          execlp(("/usr/local/bin/" + tool).c_str(), "tool", (char*)NULL); // <- command-injection
        }
      `,
    ],
    good: [
      code`
        #include <unistd.h>
        void run(const char* host) {
          execl("/bin/ping", "ping", "-c", "1", host, (char*)NULL);
          system("clear");
        }
      `,
      // The program is a fixed path held in a variable: what the variable is called says nothing.
      code`
        #include <unistd.h>
        void uptime() {
          const char* command = "/usr/bin/uptime";
          execl(command, "uptime", (char*)NULL);
        }
      `,
    ],
  },
  {
    rule: "cpp/weak-random",
    bad: [
      code`
        #include <cstdlib>
        #include <ctime>
        int makeToken() {
          srand(time(0)); // <- weak-random
          return rand();
        }
      `,
      code`
        #include <cstdlib>
        #include <string>
        char pick() {
          static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
          return chars[rand() % 36]; // <- weak-random
        }
        std::string makePassword(int n) {
          std::string password;
          for (int i = 0; i < n; ++i) password += pick();
          return password;
        }
      `,
    ],
    good: [
      code`
        #include <random>
        int makeToken() {
          std::random_device rd;
          return std::uniform_int_distribution<int>(0, 1 << 30)(rd);
        }
      `,
      code`
        #include <cstdlib>
        #include <vector>
        struct Box { float x, y, w, h; };
        struct Random {
          explicit Random(unsigned seed) : state_(seed) {}
          unsigned state_;
        };
        struct Runner {
          Random random_{1};
          Random* random() { return &random_; }
          void shuffle() { random()->state_ = 7; }
        };
        std::vector<Box> scene() {
          std::vector<Box> boxes;
          srand(1);
          for (int i = 0; i < 10; ++i) {
            float x = (rand() % 1000) / 10.0f;
            float y = (rand() % 1000) / 10.0f;
            boxes.push_back({x, y, 2.0f, 2.0f});
          }
          return boxes;
        }
        void keyboard(unsigned char key) {
          Random random(42);
          if (key == 'r') scene();
        }
      `,
    ],
  },
  {
    rule: "cpp/weak-hash",
    bad: [
      code`
        #include <openssl/md5.h>
        void h(const unsigned char* d, size_t n, unsigned char* out) {
          MD5(d, n, out); // <- weak-hash
        }
      `,
    ],
    good: [
      code`
        #include <openssl/sha.h>
        void h(const unsigned char* d, size_t n, unsigned char* out) {
          SHA256(d, n, out);
        }
      `,
    ],
  },
  {
    rule: "cpp/weak-cipher",
    bad: [
      code`
        #include <openssl/evp.h>
        void e(EVP_CIPHER_CTX* ctx, const unsigned char* k) {
          EVP_EncryptInit_ex(ctx, EVP_des_cbc(), NULL, k, NULL); // <- weak-cipher
        }
      `,
    ],
    good: [
      code`
        #include <openssl/evp.h>
        void e(EVP_CIPHER_CTX* ctx, const unsigned char* k, const unsigned char* iv) {
          EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, k, iv);
        }
      `,
    ],
  },
  {
    rule: "cpp/hardcoded-credential",
    bad: [
      code`
        #include <string>
        bool login(const std::string& user, const std::string& pass) {
          const std::string password = "hunter22"; // <- hardcoded-credential
          return pass == password;
        }
      `,
      code`
        #include <cstring>
        bool check(const char* password) {
          const char* expected = "Adm1n!2024";
          return strcmp(password, expected) == 0; // <- hardcoded-credential
        }
      `,
      code`
        #include <cstring>
        bool check(const char* input) {
          const char* pw = "admin123"; // <- hardcoded-credential
          return strcmp(input, pw) == 0;
        }
      `,
      code`
        #include <mysql/mysql.h>
        #define SERVICE_LOGIN "s3rv1ce!"
        MYSQL* open(MYSQL* c) {
          return mysql_real_connect(c, "db", "svc", SERVICE_LOGIN, "app", 0, nullptr, 0); // <- hardcoded-credential
        }
      `,
      code`
        #include <curl/curl.h>
        #include <string>
        void fetch(CURL* curl) {
          std::string login = std::string("svc:") + "T0k3nValue9";
          curl_easy_setopt(curl, CURLOPT_USERPWD, login.c_str()); // <- hardcoded-credential
          curl_easy_perform(curl);
        }
      `,
      code`
        #include <curl/curl.h>
        void fetch(CURL* curl) {
          const char* header = "Authorization: Bearer ghp_16C7e42F292c6912E7710c838347Ae178B4a";
          struct curl_slist* list = nullptr;
          list = curl_slist_append(list, header); // <- hardcoded-credential
          curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
        }
      `,
      code`
        #include <cstdio>
        #include <curl/curl.h>
        #define SERVICE_TOKEN "sk_live_4eC39HqLyjWDarjtT1zdp7dc"
        curl_slist* headers() {
          char line[256];
          snprintf(line, sizeof(line), "Authorization: Bearer %s", SERVICE_TOKEN);
          return curl_slist_append(nullptr, line); // <- hardcoded-credential
        }
      `,
      code`
        #include <format>
        #include <string>
        #include <curl/curl.h>
        curl_slist* headers() {
          const char* t = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";
          std::string line = std::format("Authorization: Bearer {}", t);
          return curl_slist_append(nullptr, line.c_str()); // <- hardcoded-credential
        }
      `,
    ],
    good: [
      code`
        #include <cstdio>
        #include <cstdlib>
        #include <format>
        #include <string>
        #include <curl/curl.h>
        curl_slist* headers() {
          char line[256];
          snprintf(line, sizeof(line), "Authorization: Bearer %s", getenv("SERVICE_TOKEN"));
          curl_slist* l = curl_slist_append(nullptr, line);
          const char* t = getenv("SERVICE_TOKEN");
          std::string other = std::format("Authorization: Bearer {}", t);
          return curl_slist_append(l, other.c_str());
        }
      `,
      code`
        #include <cstdio>
        #include <cstring>
        #include <curl/curl.h>
        curl_slist* headers(const char* token) {
          char line[256];
          snprintf(line, sizeof(line), "Authorization: Bearer %s", "placeholder-overwritten");
          strncat(line, token, 64);
          return curl_slist_append(nullptr, line);
        }
      `,
      code`
        #include <cstdlib>
        #include <string>
        bool login(const std::string& pass) {
          const char* password = std::getenv("APP_PASSWORD");
          std::string passwordPrompt = "Enter password: ";
          return password && pass == password;
        }
      `,
      code`
        #include <cstdlib>
        #include <cstring>
        bool check(const char* password) {
          const char* expected = std::getenv("ADMIN_PASSWORD");
          return expected != nullptr && strcmp(password, expected) == 0;
        }
      `,
      code`
        #include <cstring>
        int dispatch(const char* command) {
          const char* quit = "quit";
          if (strcmp(command, quit) == 0) return 0;
          return 1;
        }
      `,
      code`
        #include <mysql/mysql.h>
        #include <string>
        std::string readSecret(const char* path);
        MYSQL* open(MYSQL* c) {
          std::string login = "Zx9kq77";
          login = readSecret("/run/secrets/db");
          return mysql_real_connect(c, "db", "svc", login.c_str(), "app", 0, nullptr, 0);
        }
      `,
      code`
        #include <cstdlib>
        #include <string>
        std::string readSecret(const char* path);
        bool login(const std::string& given) {
          std::string password = "Xk82!lq";
          password = readSecret("/run/secrets/admin");
          return given == password;
        }
      `,
      code`
        #include <mysql/mysql.h>
        MYSQL* open(MYSQL* c) {
          const char* none = "";
          return mysql_real_connect(c, "localhost", "guest", none, "public", 0, nullptr, 0);
        }
      `,
      code`
        #include <curl/curl.h>
        void fetch(CURL* curl) {
          const char* accept = "Accept: application/json";
          struct curl_slist* list = nullptr;
          list = curl_slist_append(list, accept);
          curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
        }
      `,
    ],
  },
  {
    rule: "cpp/sql-injection",
    bad: [
      code`
        #include <string>
        void q(MYSQL* c, const std::string& name) {
          std::string sql = "SELECT * FROM users WHERE name = '" + name + "'"; // <- sql-injection
          mysql_query(c, sql.c_str());
        }
      `,
      code`
        #include <sstream>
        #include <string>
        void purge(soci::session& sql, const std::string& table) {
          std::ostringstream q;
          q << "DELETE FROM " << table; // <- sql-injection
          sql << q.str();
          sql << "DELETE FROM " << table;
          std::ostringstream r;
          r << table << " WHERE owner = 1";
        }
      `,
    ],
    good: [
      code`
        #include <sqlite3.h>
        void q(sqlite3* db, const char* name) {
          sqlite3_stmt* st;
          sqlite3_prepare_v2(db, "SELECT * FROM users WHERE name = ?", -1, &st, nullptr);
          sqlite3_bind_text(st, 1, name, -1, SQLITE_TRANSIENT);
        }
      `,
      code`
        #include <string>
        void reset(soci::session& sql, int n) {
          sql << "DELETE FROM geometry_columns WHERE f_table_name = 'trees'";
          sql << "DROP TABLE IF EXISTS trees CASCADE";
          sql << "INSERT INTO trees VALUES(1, 'POINT(1.23 2.34)')";
          int count = 0;
          sql << "SELECT COUNT(*) FROM trees WHERE id > :n", soci::use(n), soci::into(count);
        }
        void check(const char* a, const char* b, int i) {
          ASSERT_STREQ(a, b) << " where i == " << i;
        }
      `,
    ],
  },
  {
    rule: "cpp/new-delete-mismatch",
    bad: [
      code`
        void f(int n) {
          int* a = new int[n];
          a[0] = 1;
          delete a; // <- new-delete-mismatch
        }
      `,
    ],
    good: [
      code`
        void f(int n) {
          int* a = new int[n];
          int* b = new int(3);
          delete[] a;
          delete b;
        }
      `,
      code`
        struct Impl { char* names[4]; };
        struct Locale {
          Impl* impl_;
          Locale() { impl_ = new Impl(); impl_->names[0] = new char[8]; }
          void rename() {
            delete [] impl_->names[0];
            impl_->names[0] = nullptr;
          }
        };
      `,
    ],
  },
  {
    rule: "cpp/memory-leak",
    bad: [
      code`
        struct Node { int v; };
        void f() {
          Node* n = new Node(); // <- memory-leak
          n->v = 1;
        }
      `,
      code`
        #include <cstdio>
        #include <cstring>
        void show(const char* s) {
          char* copy = new char[strlen(s) + 1]; // <- memory-leak
          strcpy(copy, s);
          printf("%s\n", copy);
        }
      `,
    ],
    good: [
      code`
        #include <memory>
        struct Node { int v; };
        void f() {
          Node* n = new Node();
          n->v = 1;
          delete n;
          auto m = std::make_unique<Node>();
        }
      `,
      code`
        #include <locale>
        #include <iostream>
        #include <map>
        #include <vector>
        struct Facet : std::locale::facet {};
        struct Thread { void join(); };
        struct Group { void add(Thread* t); };
        struct Widget {
          Widget* timer;
          explicit Widget(Widget* parent = nullptr);
          void addWidget(Widget* w);
          void setup() {
            Widget* layout = new Widget(this);
            Widget* quit = new Widget();
            layout->addWidget(quit);
            timer = new Widget(this);
          }
        };
        struct Storage { int* ptr; };
        struct Event { int refs = 0; };
        void print_dates(Group& group, Storage& storage, int** out) {
          Facet* facet = new Facet();
          std::cout.imbue(std::locale(std::cout.getloc(), facet));
          Thread* th = new Thread();
          group.add(th);
          storage.ptr = new int(4);
          *out = new int(5);
          static auto* registry = new std::map<int, int>;
          (*registry)[1] = 2;
          boost::intrusive_ptr< Event > first = new Event();
        }
      `,
    ],
  },

  {
    rule: "cpp/unbounded-copy-loop",
    bad: [
      code`
        void copyString(char* dest, const char* src) {
          while (*src != '\0') { // <- unbounded-copy-loop
            *dest = *src;
            dest++;
            src++;
          }
        }
      `,
      code`
        void copyString(char* dest, const char* src) {
          int i;
          for (i = 0; src[i] != '\0'; ++i) { // <- unbounded-copy-loop
            dest[i] = src[i];
          }
          dest[i] = '\0';
        }
      `,
      code`
        #include <cstring>
        char* clone(const char* s) {
          char* out = new char[strlen(s)]; // <- unbounded-copy-loop
          return out;
        }
      `,
    ],
    good: [
      code`
        #include <cstddef>
        void copyString(char* dest, const char* src, size_t size) {
          size_t i = 0;
          while (src[i] != '\0' && i + 1 < size) {
            dest[i] = src[i];
            i++;
          }
          dest[i] = '\0';
        }
        size_t length(const char* s) {
          size_t n = 0;
          while (s[n] != '\0') n++;
          return n;
        }
      `,
    ],
  },
  {
    rule: "cpp/use-after-free",
    bad: [
      code`
        #include <iostream>
        struct Resource { int value = 1; };
        int main() {
          Resource* r = new Resource();
          delete r;
          std::cout << r->value << std::endl; // <- use-after-free
        }
      `,
      code`
        #include <cstdlib>
        void twice() {
          char* p = (char*)malloc(16);
          free(p);
          free(p); // <- use-after-free
        }
      `,
      code`
        #include <cstring>
        int first(const char* s) {
          char* copy = new char[strlen(s) + 1];
          strcpy(copy, s);
          if (copy[0] == '#') {
            delete[] copy;
            return copy[1]; // <- use-after-free
          }
          int c = copy[0];
          delete[] copy;
          return c;
        }
      `,
      code`
        struct Item { int v; };
        void drain(Item** items, int n) {
          for (int i = 0; i < n; ++i) delete items[i];
          delete[] items;
          items[0]->v = 0; // <- use-after-free
        }
      `,
    ],
    good: [
      code`
        #include <iostream>
        struct Resource { int value = 1; };
        int main() {
          Resource* r = new Resource();
          std::cout << r->value << std::endl;
          delete r;
          r = nullptr;
          r = new Resource();
          std::cout << r->value << std::endl;
          delete r;
        }
      `,
      code`
        #include <memory>
        #include <algorithm>
        #include <list>
        #include <cstdio>
        struct Node { int v; };
        struct delete_disposer {
          void operator()(Node* n) const { delete n; }
        };
        struct array_deleter {
          template <typename T>
          void operator()(T* t) const { delete[] t; }
        };
        struct Raw { int fd; };
        struct deleter { void operator()(Raw* r) const { delete r; } };
        typedef deleter deleter_type;
        void run(std::list<Node*>& nodes, Raw* r) {
          nodes.remove_if([](Node* n) { return n->v < 0; });
          std::for_each(nodes.begin(), nodes.end(), delete_disposer());
          std::unique_ptr<Raw, deleter> owned(r, deleter_type());
          const deleter_type& d = owned.get_deleter();
          d(owned.release());
        }
        void clear(Node** items, int n) {
          for (int i = 0; i < n; ++i) delete items[i];
          delete[] items;
        }
        int names(int count) {
          int total = 0;
          for (int j = 0; j < count; j++) {
            char* name = new char[16];
            if (std::snprintf(name, 16, "%d", j) < 0) {
              delete[] name;
              continue;
            }
            total += name[0];
            delete[] name;
          }
          return total;
        }
        void scopes(std::list<Node>& a) {
          {
            Node* ptr = new Node();
            delete ptr;
          }
          {
            Node *ptr = &*a.begin();
            ptr->v = 1;
          }
        }
        struct Facet {
          void release() throw() { delete this; }
          int get() const { return this->v; }
          int v = 0;
        };
      `,
    ],
  },
  {
    rule: "cpp/uninitialized-pointer",
    bad: [
      code`
        #include <iostream>
        int main() {
            const char* name;
            std::cout << name[0] << std::endl; // <- uninitialized-pointer
            return 0;
        }
      `,
      code`
        int main() {
          int* p;
          *p = 5; // <- uninitialized-pointer
          return 0;
        }
      `,
      code`
        #include <iostream>
        class Holder {
        public:
            int* value;
        };
        int main() {
            Holder h;
            std::cout << *h.value << std::endl; // <- uninitialized-pointer
        }
      `,
    ],
    good: [
      code`
        #include <vector>
        int scale(const std::vector<int>& v, int w, int h) {
            int total = 0;
            total = w * h;
            return total + h[&v[0] - &v[0]];
        }
      `,
      code`
        #define EXPORT_VISIBILITY(v) __attribute__((visibility(#v)))
        namespace util EXPORT_VISIBILITY(default)
        {
        class Duration {
        public:
            Duration& operator+=(long m) {
                n_ += m;
                return *this;
            }
            Duration operator+(long m) const {
                Duration d = *this;
                d += m;
                return d;
            }
        private:
            long n_ = 0;
        };
        }
      `,
      code`
        #include <iostream>
        class Holder {
        public:
            int* value;
            Holder() : value(new int(0)) {}
            ~Holder() { delete value; }
        };
        int main() {
            int x = 0;
            int* p;
            p = &x;
            *p = 5;
            Holder h;
            std::cout << *h.value << std::endl;
        }
      `,
      code`
        #include <locale>
        #include <string>
        struct Buf { int mode; bool init; };
        int close_file(Buf* self) {
          struct close_sentry {
            int count;
            Buf* fb;
            explicit close_sentry(Buf* b) : fb(b) {}
            ~close_sentry() { fb->mode = 0; fb->init = false; }
          } sentry(self);
          return 0;
        }
        std::string to_external(const std::codecvt<wchar_t, char, std::mbstate_t>* cvt, const std::wstring& src) {
          char work[256];
          std::mbstate_t state{};
          const wchar_t* from_next;
          char* to_next;
          cvt->out(state, src.c_str(), src.c_str() + src.size(), from_next, work, work + 255, to_next);
          *to_next = '\0';
          return std::string(work);
        }
      `,
    ],
  },
  {
    rule: "cpp/constructor-leak",
    bad: [
      code`
        #include <memory>
        struct Result { int value = 0; };
        class Promise {
            std::unique_ptr<Result> storage_;
            int* scratch_;
        public:
            Promise() : storage_(new Result()), scratch_(new int[16]) {} // <- constructor-leak
            ~Promise() {}
        };
      `,
      code`
        class Buffer {
            int* data;
        public:
            Buffer(int size) { // <- constructor-leak
                data = new int[size];
            }
            ~Buffer() {}
        };
      `,
      code`
        #include <cstring>
        class Text {
            char* data;
        public:
            Text(const char* s) { // <- constructor-leak
                data = new char[strlen(s) + 1];
                strcpy(data, s);
            }
        };
      `,
    ],
    good: [
      code`
        #include <memory>
        struct Result { int value = 0; };
        class Promise {
            typedef std::unique_ptr<Result> Ptr_type;
            Ptr_type storage_;
            std::unique_ptr<int[]> scratch_;
        public:
            Promise() : storage_(new Result()), scratch_(new int[16]) {}
            ~Promise() {}
        };
      `,
      code`
        #include <memory>
        class Buffer {
            int* data;
        public:
            Buffer(int size) {
                data = new int[size];
            }
            ~Buffer() { delete[] data; }
        };
        class Owned {
            std::unique_ptr<int[]> data;
        public:
            Owned(int size) : data(std::make_unique<int[]>(size)) {}
        };
      `,
      code`
        #include <memory>
        struct Impl { virtual ~Impl() {} };
        struct Base { explicit Base(Impl* p); };
        struct Writer { int fd = 1; };
        struct Stream { explicit Stream(Writer* w); };
        struct State { void release(); };
        struct Result { int v = 0; };
        struct Deleter { void operator()(Result* r) const { delete r; } };
        template <typename T> using Ptr = std::unique_ptr<T, Deleter>;
        template <typename T> struct Scoped {
            explicit Scoped(T* p) : p_(p) {}
            ~Scoped() { delete p_; }
            T* p_;
        };
        struct Widget { explicit Widget(Widget* parent = nullptr); void add(Widget* w); };
        class Attribute : public Base {
        public:
            Attribute() : Base(new Impl()) {}
        };
        class Listener {
            Writer* const writer_;
            Stream stream_;
        public:
            Listener() : writer_(new Writer), stream_(writer_) {}
        };
        class Ref {
            State* state_;
        public:
            Ref() : state_(new State()) {}
            ~Ref() { if (state_) state_->release(); }
        };
        class Promise {
            typedef Ptr<Result> Ptr_type;
            Ptr_type storage_;
        public:
            Promise() : storage_(new Result()) {}
        };
        class Convert {
            Scoped<Result> cvt_;
        public:
            Convert() : cvt_(new Result()) {}
        };
        class Window : public Widget {
            Widget* box;
            Widget* canvas;
        public:
            Window() {
                box = new Widget(this);
                canvas = new Widget();
                box->add(canvas);
                char* tmp;
                tmp = new char[4];
                delete[] tmp;
            }
        };
      `,
    ],
  },
  {
    rule: "cpp/race-condition",
    bad: [
      code`
        #include <thread>
        int counter = 0;
        void work() {
            for (int i = 0; i < 1000; ++i) counter++; // <- race-condition
        }
        int main() {
            std::thread t1(work);
            std::thread t2(work);
            t1.join();
            t2.join();
        }
      `,
    ],
    good: [
      code`
        #include <atomic>
        #include <mutex>
        #include <thread>
        int counter = 0;
        std::mutex m;
        void work() {
            for (int i = 0; i < 1000; ++i) {
                std::lock_guard<std::mutex> lock(m);
                counter++;
            }
        }
        int main() {
            std::thread t1(work);
            std::thread t2(work);
            t1.join();
            t2.join();
        }
      `,
      code`
        #include <mutex>
        #include <thread>
        int state = 0;
        std::timed_mutex mut;
        void try_writer() {
            for (int i = 0; i < 100; ++i) {
                if (mut.try_lock()) {
                    state = 1;
                    state = 0;
                    mut.unlock();
                }
            }
        }
        int main() {
            std::thread t1(try_writer);
            std::thread t2(try_writer);
            t1.join();
            t2.join();
        }
      `,
    ],
  },
  {
    rule: "cpp/integer-overflow",
    bad: [
      code`
        #include <climits>
        #include <iostream>
        int main() {
            int x = INT_MAX;
            x = x + 1; // <- integer-overflow
            std::cout << x;
        }
      `,
    ],
    good: [
      code`
        #include <climits>
        #include <iostream>
        int main() {
            int x = INT_MAX;
            if (x < INT_MAX) x = x + 1;
            std::cout << x;
        }
      `,
      code`
        #include <limits>
        template <typename IntType>
        IntType to_int(double x) {
          const double naf = (1 - std::numeric_limits<double>::epsilon()) / 2;
          const double thr =
            std::numeric_limits<IntType>::max() + naf;
          double limit = std::numeric_limits<int>::max() + 0.5;
          return x < thr && x < limit ? IntType(x) : std::numeric_limits<IntType>::max();
        }
      `,
    ],
  },
  {
    rule: "cpp/unbounded-allocation",
    bad: [
      code`
        #include <iostream>
        int main() {
            int size;
            std::cin >> size;
            char* buffer = new char[size]; // <- unbounded-allocation
            delete[] buffer;
        }
      `,
    ],
    good: [
      code`
        #include <iostream>
        int main() {
            int size;
            std::cin >> size;
            if (size <= 0 || size > 4096) return 1;
            char* buffer = new char[size];
            delete[] buffer;
        }
      `,
    ],
  },
  {
    rule: "cpp/divide-by-zero",
    bad: [
      code`
        int ratio(int total, int parts) {
            return total / parts; // <- divide-by-zero
        }
      `,
    ],
    good: [
      code`
        #include <stdexcept>
        int ratio(int total, int parts) {
            if (parts == 0) throw std::invalid_argument("parts must not be zero");
            return total / parts;
        }
        double half(double x) { return x / 2; }
      `,
      code`
        #include <boost/format.hpp>
        #include <iostream>
        #include <string>
        #include <vector>
        void stats(int sum, int n, unsigned samples, std::vector<std::string>& keys) {
          float avg = (float)sum / n;
          double inv = 1.0 / samples + double(sum) / n;
          for (int i = 0; i < 3; ++i) keys.push_back((boost::format("%d") % i).str());
          std::cout << avg << inv << std::endl;
        }
      `,
    ],
  },
  {
    rule: "cpp/hardcoded-key",
    bad: [
      code`
        #include <openssl/evp.h>
        #include <openssl/rand.h>
        int seal(EVP_CIPHER_CTX* ctx) {
          unsigned char key[] = "0123456789abcdef0123456789abcdef";
          unsigned char iv[12];
          RAND_bytes(iv, sizeof iv);
          return EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, iv); // <- hardcoded-key
        }
      `,
      code`
        #include <openssl/aes.h>
        static const unsigned char k[16] = {0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
                                            0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c};
        void setup(AES_KEY* aes) {
          AES_set_encrypt_key(k, 128, aes); // <- hardcoded-key
        }
      `,
      code`
        #include <openssl/hmac.h>
        #include <string>
        unsigned char* sign(const unsigned char* data, size_t n, unsigned char* out, unsigned int* len) {
          const std::string macKey = "k3y-for-hmac";
          return HMAC(EVP_sha256(), macKey.c_str(), macKey.size(), data, n, out, len); // <- hardcoded-key
        }
      `,
    ],
    good: [
      code`
        #include <openssl/evp.h>
        #include <openssl/rand.h>
        int seal(EVP_CIPHER_CTX* ctx) {
          unsigned char key[32];
          unsigned char iv[12];
          RAND_bytes(key, sizeof key);
          RAND_bytes(iv, sizeof iv);
          return EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key, iv);
        }
      `,
      code`
        #include <openssl/evp.h>
        int seal(EVP_CIPHER_CTX* ctx, const unsigned char* key, const unsigned char* iv) {
          EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), nullptr, nullptr, nullptr);
          return EVP_EncryptInit_ex(ctx, nullptr, nullptr, key, iv);
        }
      `,
      code`
        #include <openssl/hmac.h>
        #include <cstdlib>
        #include <cstring>
        unsigned char* sign(const unsigned char* data, size_t n, unsigned char* out, unsigned int* len) {
          const char* k = std::getenv("MAC_KEY");
          if (k == nullptr) return nullptr;
          return HMAC(EVP_sha256(), k, std::strlen(k), data, n, out, len);
        }
      `,
      code`
        #include <openssl/aes.h>
        #include <string>
        std::string loadKey();
        void setup(AES_KEY* aes) {
          std::string k = "dev-key-0123456";
          k = loadKey();
          AES_set_encrypt_key((const unsigned char*)k.data(), 128, aes);
        }
      `,
    ],
  },
  {
    rule: "cpp/static-iv",
    bad: [
      code`
        #include <openssl/evp.h>
        int enc(EVP_CIPHER_CTX* ctx, const unsigned char* key) {
          unsigned char iv[16] = {0};
          return EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), nullptr, key, iv); // <- static-iv
        }
      `,
      code`
        #include <openssl/aes.h>
        void enc(const unsigned char* in, unsigned char* out, size_t n, const AES_KEY* k) {
          unsigned char ivec[] = "fixedivfixediv12";
          AES_cbc_encrypt(in, out, n, k, ivec, AES_ENCRYPT); // <- static-iv
        }
      `,
    ],
    good: [
      code`
        #include <openssl/evp.h>
        #include <openssl/rand.h>
        int enc(EVP_CIPHER_CTX* ctx, const unsigned char* key, unsigned char* iv) {
          if (RAND_bytes(iv, 16) != 1) return 0;
          return EVP_EncryptInit_ex(ctx, EVP_aes_256_cbc(), nullptr, key, iv);
        }
      `,
    ],
  },
];
