// audit_log — storage in one file: a bus that records every event in a
// durable log, a JSON-lines audit trail of the large payments only (a store
// stage after a filter), and a consumer that reads the log on its own with a
// checkpoint, stopping half-way and resuming where it left off.
//
//   audit_log [DIR]     (default: a fresh folder under /tmp)
#include <sluice/sluice.hpp>
#include <sluice/storage.hpp>
#include <sluice/storage/json_sink.hpp>

#include <fmt/format.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace {

// Trivially copyable: stored with memcpy.
struct payment {
  std::uint64_t account;
  std::int64_t cents;
};

// Not trivially copyable: stored with a codec of its own.
struct note {
  std::uint64_t account;
  std::string text;
};

struct note_codec {
  void encode(const note& n, sluice::byte_writer& out) const {
    out.put(n.account);
    out.put(static_cast<std::uint32_t>(n.text.size()));
    out.append(n.text);
  }
  sluice::decoded<note> decode(sluice::byte_view in, std::uint32_t /*version*/) const {
    sluice::byte_reader r(in);
    note n;
    std::uint32_t len = 0;
    if (!r.get(n.account) || !r.get(len) || !r.string(len, n.text) || !r.done())
      return sluice::decode_failure("a note's bytes are cut short");
    return n;
  }
};

}  // namespace

template <>
struct fmt::formatter<payment> {
  constexpr auto parse(fmt::format_parse_context& ctx) { return ctx.begin(); }
  auto format(const payment& p, fmt::format_context& ctx) const {
    return fmt::format_to(ctx.out(), "account {} paid {}.{:02}", p.account, p.cents / 100,
                          p.cents % 100);
  }
};

int main(int argc, char** argv) {
  std::string dir;
  if (argc > 1) {
    dir = argv[1];
  } else {
    char tmpl[] = "/tmp/sluice-audit-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return 1;
    dir = tmpl;
  }
  const std::string log_dir = dir + "/log";
  const std::string audit_path = dir + "/large-payments.jsonl";

  auto types = std::make_shared<sluice::codecs>();
  types->add<payment>("payment");
  types->add<note>("note", 1, note_codec{});

  // ---- record: the whole bus to the log, large payments to a JSON trail ----
  {
    sluice::bus bus;
    sluice::folder_recording log = sluice::record_to_folder(bus, log_dir, types);
    if (!log) {
      std::fprintf(stderr, "audit_log: %s\n", log.error.describe().c_str());
      return 1;
    }
    sluice::storage_error err;
    auto json = sluice::json_sink::open(audit_path, types, err);
    if (json == nullptr) {
      std::fprintf(stderr, "audit_log: %s\n", err.describe().c_str());
      return 1;
    }
    json->show<payment>();
    auto audit = std::make_shared<sluice::recorder>(std::move(json), types);
    bus.stages<payment>().filter([](const payment& p) { return p.cents >= 100'000; }).store(audit);

    std::int64_t balance = 0;
    auto on_payment = bus.subscribe<payment>([&](const payment& p) { balance += p.cents; });
    auto on_note = bus.subscribe<note>([](const note&) {});
    bus.run(2);
    for (std::uint64_t i = 0; i < 1000; ++i) {
      bus.publish(payment{i % 10, static_cast<std::int64_t>(i * 997 % 200'000)}, i % 10);
      if (i % 100 == 0) bus.publish(note{i % 10, "checked by " + std::to_string(i)}, i % 10);
    }
    bus.stop();  // delivers, then writes and syncs the log
    (void)audit->close();
    std::printf("recorded %llu events in %s (balance %lld cents)\n",
                static_cast<unsigned long long>(log.rec->stats().written), log_dir.c_str(),
                static_cast<long long>(balance));
    std::printf("audit trail: %llu large payments in %s\n",
                static_cast<unsigned long long>(audit->stats().written), audit_path.c_str());
  }

  // ---- read: a consumer with a checkpoint, stopping half-way ----
  sluice::checkpoint cp(dir + "/notes.ckpt");
  int notes_seen = 0;
  for (int run = 0; run < 2; ++run) {
    sluice::storage_error err;
    const std::uint64_t from = cp.load(err).value_or(0);
    sluice::reader_options ro;
    ro.from = from;
    ro.type = "note";
    auto reader = sluice::log_reader::open(log_dir, ro, err);
    if (reader == nullptr) {
      std::fprintf(stderr, "audit_log: %s\n", err.describe().c_str());
      return 1;
    }
    sluice::stored_event e;
    int this_run = 0;
    while (reader->next(e) == sluice::read_status::event) {
      const auto n = types->decode<note>(e);
      if (!n) {
        std::fprintf(stderr, "audit_log: offset %llu: %s\n",
                     static_cast<unsigned long long>(e.offset), n.error().message);
        return 1;
      }
      ++notes_seen;
      ++this_run;
      if (run == 0 && this_run == 4) break;  // "crash" after four notes
    }
    (void)cp.store(reader->position());
    std::printf("consumer run %d: started at offset %llu, read %d notes\n", run + 1,
                static_cast<unsigned long long>(from), this_run);
  }

  const bool ok = notes_seen == 10;
  std::printf("notes read in all: %d of 10 -> %s\n", notes_seen, ok ? "OK" : "FAILED");
  if (argc <= 1) {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
  return ok ? 0 : 1;
}
