print("caresync")
