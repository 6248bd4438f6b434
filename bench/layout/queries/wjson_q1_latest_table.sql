SELECT ts, metrics FROM wjson.latest WHERE device_id = :d;
