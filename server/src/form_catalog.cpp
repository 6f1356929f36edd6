// Form publishing (form_catalog.hpp).
#include "form_catalog.hpp"

namespace fieldsync::server {

Result<PublishedForm> publish_form(Writer& writer, const json& definition,
                                   const std::string& path_id, const std::string& published_by,
                                   std::int64_t now_ms) {
  if (!definition.is_object())
    return Error(Errc::validation, "a form definition must be a JSON object", "");
  json body = definition;
  body.erase("version");
  if (!path_id.empty()) {
    auto id = body.find("id");
    if (id == body.end() || !id->is_string() || id->get<std::string>() != path_id)
      return Error(Errc::validation, "the form id must be \"" + path_id + "\", as in the path",
                   "id");
  }
  auto parsed = Form::parse(body);
  if (!parsed) return std::move(parsed).error();
  Form form = std::move(parsed).value();

  PublishedForm out;
  out.id = form.id;
  auto r = writer.run([&](WriteTxn& txn) -> Result<void> {
    auto latest = txn.form(form.id, std::nullopt);
    if (latest && latest->same_definition(form)) {
      out.version = latest->version;
      out.created = false;
      return {};
    }
    form.version = latest ? latest->version + 1 : 1;
    txn.insert_form(form, published_by, now_ms);
    out.version = form.version;
    out.created = true;
    return {};
  });
  if (!r) return r.error();
  return out;
}

}  // namespace fieldsync::server
