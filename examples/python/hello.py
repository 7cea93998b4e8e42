# A plain function in Python (on Pyodide): the members of the JSON object it is called with
# are its keyword arguments. Run it once, locally (from this file's directory):
#   functions-host run hello.py '{"name":"Python"}'
# or deploy it and invoke it:
#   functions-host deploy hello.py && functions-host invoke hello '{"name":"Python"}'


def hello(name: str = "World") -> dict:
    return {"message": f"Hello, {name}!"}
