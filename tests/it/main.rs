mod schema_diff_proto;
