// A separate project using the installed fieldsync package.
#include <cstdio>

#include <fieldsync/store.hpp>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  auto form = fieldsync::Form::parse_text(
      R"({"id": "f", "version": 1, "fields": [{"name": "n", "type": "integer"}]})");
  auto store = fieldsync::Store::open({argv[1]});
  if (!form || !store) return 1;
  if (!(*store)->import_form(*form)) return 1;
  fieldsync::PutRequest put;
  put.form = "f";
  put.scope = "14.03.01";
  put.fields = {{"n", 1}};
  if (!(*store)->put(put)) return 1;
  auto status = (*store)->status();
  if (!status) return 1;
  std::printf("saved %lld record, %lld change pending\n", static_cast<long long>(status->records),
              static_cast<long long>(status->pending));
  return 0;
}
