from entityseg_data.cli.main import main

if __name__ == "__main__":
    main()
